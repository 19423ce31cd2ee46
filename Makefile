# anb-agent — one non-recursive Makefile.
#   make [all]            build build/anb-agent
#   make check            unit tests (check) + integration tests (real systemd)
#   make check SANITIZE=address,undefined
#   make demo             the sample app under the agent on a private systemd
#   make install PREFIX=/usr DESTDIR=...
#   V=1                   show the commands

VERSION    := 0.1.0
PREFIX     ?= /usr
SBINDIR    ?= $(PREFIX)/sbin
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
SYSCONFDIR ?= /etc
UNITDIR    ?= $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)

B          := build
SANITIZE   ?=
ifneq ($(SANITIZE),)
B          := build/san
endif

PKGS       := libsystemd libcurl jansson libuv inih expat
CC         ?= cc
CFLAGS     ?= -O2 -g
CFLAGS     += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2 \
              -fno-strict-aliasing -D_GNU_SOURCE -DANB_VERSION='"$(VERSION)"' \
              -Iagent-lib -I$(LLHTTP_INC) -MMD -MP $(shell pkg-config --cflags $(PKGS))
LDLIBS     += $(shell pkg-config --libs $(PKGS))
ifneq ($(SANITIZE),)
CFLAGS     += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS    += -fsanitize=$(SANITIZE)
endif

# llhttp: Debian's node-llhttp ships its C sources; they are compiled in.
LLHTTP_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
LLHTTP_SRC := $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c $(LLHTTP_DIR)/llhttp.c
LLHTTP_OBJ := $(patsubst $(LLHTTP_DIR)/%.c,$(B)/llhttp/%.o,$(LLHTTP_SRC))

LIB_SRC    := $(wildcard agent-lib/*.c)
LIB_OBJ    := $(patsubst %.c,$(B)/%.o,$(LIB_SRC))
DAEMON_SRC := $(wildcard daemon/*.c)
DAEMON_OBJ := $(patsubst %.c,$(B)/%.o,$(DAEMON_SRC))
UNIT_SRC   := $(wildcard test/unit/*.c)
UNIT_OBJ   := $(patsubst %.c,$(B)/%.o,$(UNIT_SRC))

ifeq ($(V),1)
Q :=
else
Q := @
endif

.PHONY: all check check-unit check-docs check-fuzz check-integration check-valgrind install clean demo bench fuzz deb
all: $(B)/anb-agent

$(B)/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(B)/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(filter-out -Werror -Wextra -Wshadow -Wformat=2,$(CFLAGS)) -I$(LLHTTP_INC) -w -c -o $@ $<

$(B)/libanb.a: $(LIB_OBJ) $(LLHTTP_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/anb-agent: $(DAEMON_OBJ) $(B)/libanb.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(DAEMON_OBJ) $(B)/libanb.a $(LDLIBS)

$(B)/test/unit-tests: $(UNIT_OBJ) $(B)/libanb.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJ) $(B)/libanb.a $(LDLIBS) $(shell pkg-config --libs check)

# Works on a fresh machine: installs what is missing first (idempotent, fast
# when everything is there).
check:
	scripts/install-deps.sh
	$(MAKE) check-unit check-docs check-fuzz check-integration

# The man pages must render without a groff warning.
check-docs:
	@for m in man/*.[0-9]; do \
		w=$$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l $$m 2>&1 >/dev/null); \
		[ -z "$$w" ] || { echo "$$m: $$w"; exit 1; }; done
	@echo "man pages render: $$(ls man/*.[0-9] | tr '\n' ' ')"

# libFuzzer targets: the HTTP request handling and the template/quoting.
# `make fuzz FUZZ_SECONDS=300` runs each for that long; `make check` runs a
# short smoke of each over its seed corpus.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := httpconn template
FUZZ_CFLAGS := -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iagent-lib -I$(LLHTTP_INC)
build/fuzz/fuzz_httpconn: test/fuzz/fuzz_httpconn.c agent-lib/httpconn.c agent-lib/util.c agent-lib/*.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -o $@ test/fuzz/fuzz_httpconn.c agent-lib/httpconn.c agent-lib/util.c $(LLHTTP_SRC)
build/fuzz/fuzz_template: test/fuzz/fuzz_template.c agent-lib/template.c agent-lib/envfile.c agent-lib/util.c agent-lib/*.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -o $@ test/fuzz/fuzz_template.c agent-lib/template.c agent-lib/envfile.c agent-lib/util.c

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do mkdir -p build/fuzz/corpus-$$t; \
		seeds=test/fuzz/corpus-$$t; \
		build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -artifact_prefix=build/fuzz/ \
			build/fuzz/corpus-$$t $$seeds || exit 1; done

check-fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do mkdir -p build/fuzz/smoke-$$t; \
		seeds=test/fuzz/corpus-$$t; \
		build/fuzz/fuzz_$$t -runs=20000 -max_len=4096 -artifact_prefix=build/fuzz/ build/fuzz/smoke-$$t $$seeds \
			>build/fuzz/smoke-$$t.log 2>&1 || { tail -40 build/fuzz/smoke-$$t.log; exit 1; }; \
		echo "fuzz smoke $$t: $$(grep -o 'Done [0-9]* runs' build/fuzz/smoke-$$t.log), no crash"; done

check-unit: $(B)/test/unit-tests $(B)/anb-agent
	ANB_AGENT=$(CURDIR)/$(B)/anb-agent ANB_SRCDIR=$(CURDIR) $(B)/test/unit-tests

check-integration: $(B)/anb-agent
	ANB_AGENT=$(CURDIR)/$(B)/anb-agent test/integration/run-all.sh

# The unit tests (unforked), the daemon in the supervision tests and the
# CLI in the render tests under valgrind; any definite leak or invalid
# access fails.
VALGRIND := valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
check-valgrind: $(B)/test/unit-tests $(B)/anb-agent
	CK_FORK=no CK_DEFAULT_TIMEOUT=120 ANB_SRCDIR=$(CURDIR) $(VALGRIND) $(B)/test/unit-tests
	ANB_AGENT=$(CURDIR)/$(B)/anb-agent ANB_AGENT_WRAPPER="$(VALGRIND) --log-file=/dev/stderr" \
		test/integration/run-all.sh supervise
	for t in render-cli aws-render; do ANB_AGENT=$(CURDIR)/test/valgrind-agent.sh \
		ANB_AGENT_REAL=$(CURDIR)/$(B)/anb-agent test/integration/run-all.sh $$t || exit 1; done

demo:
	scripts/install-deps.sh
	$(MAKE) all
	scripts/demo.sh $(CURDIR)/$(B)/anb-agent

deb: all
	scripts/mkdeb.sh $(VERSION) $(CURDIR)/build

bench: all
	scripts/bench.sh $(CURDIR)/$(B)/anb-agent

install: all
	install -Dm0755 $(B)/anb-agent $(DESTDIR)$(SBINDIR)/anb-agent
	install -Dm0644 units/anb-agent.service $(DESTDIR)$(UNITDIR)/anb-agent.service
	for u in units/anb-api.service units/anb-worker.service; do \
		[ -f $$u ] && install -Dm0644 $$u $(DESTDIR)$(UNITDIR)/$$(basename $$u) || true; done
	for d in units/*.service.d; do [ -d $$d ] || continue; \
		install -Dm0644 -t $(DESTDIR)$(UNITDIR)/$$(basename $$d) $$d/*.conf; done
	install -Dm0644 conf/agent.conf $(DESTDIR)$(SYSCONFDIR)/anb-agent/agent.conf
	install -Dm0644 conf/env.tmpl $(DESTDIR)$(SYSCONFDIR)/anb-agent/env.tmpl
	for m in man/*.[0-9]; do [ -f $$m ] || continue; s=$${m##*.}; \
		install -Dm0644 $$m $(DESTDIR)$(MANDIR)/man$$s/$$(basename $$m); done

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d) $(UNIT_OBJ:.o=.d)
