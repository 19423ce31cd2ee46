# anb-agent — one non-recursive Makefile.
#   make [all]            build build/anb-agent
#   make check            unit tests (check) + integration tests (real systemd)
#   make check SANITIZE=address,undefined
#   make check-faults     the slow fault-matrix tests (soak, credential expiry)
#   make check-e2e        the end-to-end test in a VM (root, ~5 min)
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

LIB_SRC    := $(wildcard agent-lib/*/*.c)
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

.PHONY: all check check-layers check-hardening check-unit check-docs check-fuzz check-integration check-faults check-e2e check-valgrind install clean demo bench fuzz deb
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

# The daemon's pure logic (its state machine) is unit-tested too.
UNIT_DAEMON_OBJ := $(B)/daemon/lifecycle.o
$(B)/test/unit-tests: $(UNIT_OBJ) $(UNIT_DAEMON_OBJ) $(B)/libanb.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJ) $(UNIT_DAEMON_OBJ) $(B)/libanb.a $(LDLIBS) $(shell pkg-config --libs check)

# Works on a fresh machine: installs what is missing first (idempotent, fast
# when everything is there).
check:
	scripts/install-deps.sh
	$(MAKE) check-layers check-hardening check-unit check-docs check-fuzz check-integration

# agent-lib's layers: no include from a lower layer into a higher one
# (the rule is in README, "Layout").
check-layers:
	scripts/check-layers.sh

# The shipped units' systemd-analyze security scores stay within limits.
check-hardening:
	scripts/check-hardening.sh

# The man pages must render without a groff warning.
check-docs:
	@for m in man/*.[0-9]; do \
		w=$$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l $$m 2>&1 >/dev/null); \
		[ -z "$$w" ] || { echo "$$m: $$w"; exit 1; }; done
	@echo "man pages render: $$(ls man/*.[0-9] | tr '\n' ' ')"

# libFuzzer targets (test/fuzz/fuzz_NAME.c, seeds in test/fuzz/corpus-NAME/):
# the HTTP request handling, the template/quoting, agent.conf, the IMDS
# credentials JSON, AWS JSON errors, EC2's XML and the control socket's
# requests.  Each links against agent-lib built once with the fuzzer's
# instrumentation.  `make fuzz FUZZ_SECONDS=300` runs each for that long;
# `make check` runs a short smoke of each over its seed corpus.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_RUNS ?= 100000
FUZZ_TARGETS := httpconn template config imds_json aws_json ec2_xml control
FUZZ_CFLAGS := -g -O1 -D_GNU_SOURCE -DANB_VERSION='"$(VERSION)"' -fsanitize=fuzzer-no-link,address,undefined -Iagent-lib -I$(LLHTTP_INC) \
               $(shell pkg-config --cflags $(PKGS))
FUZZ_OBJ := $(patsubst %.c,build/fuzz/obj/%.o,$(LIB_SRC)) $(patsubst $(LLHTTP_DIR)/%.c,build/fuzz/obj/llhttp/%.o,$(LLHTTP_SRC))
build/fuzz/obj/%.o: %.c agent-lib/*/*.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)clang $(FUZZ_CFLAGS) -c -o $@ $<
build/fuzz/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(@D)
	$(Q)clang $(FUZZ_CFLAGS) -c -o $@ $<
build/fuzz/libanb-fuzz.a: $(FUZZ_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
build/fuzz/fuzz_%: test/fuzz/fuzz_%.c build/fuzz/libanb-fuzz.a agent-lib/*/*.h
	@mkdir -p $(@D)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/libanb-fuzz.a $(LDLIBS)

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do mkdir -p build/fuzz/corpus-$$t; \
		seeds=test/fuzz/corpus-$$t; \
		build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -artifact_prefix=build/fuzz/ \
			build/fuzz/corpus-$$t $$seeds || exit 1; done

check-fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do mkdir -p build/fuzz/smoke-$$t; \
		seeds=test/fuzz/corpus-$$t; \
		build/fuzz/fuzz_$$t -runs=$(FUZZ_SMOKE_RUNS) -max_len=4096 -artifact_prefix=build/fuzz/ build/fuzz/smoke-$$t $$seeds \
			>build/fuzz/smoke-$$t.log 2>&1 || { tail -40 build/fuzz/smoke-$$t.log; exit 1; }; \
		echo "fuzz smoke $$t: $$(grep -o 'Done [0-9]* runs' build/fuzz/smoke-$$t.log), no crash"; done

# Temporary directories go under one that is removed afterwards, whatever
# the result: a run leaves nothing in /tmp.
check-unit: $(B)/test/unit-tests $(B)/anb-agent
	@t=$$(mktemp -d /tmp/anb-unit.XXXXXX); \
	TMPDIR=$$t ANB_AGENT=$(CURDIR)/$(B)/anb-agent ANB_SRCDIR=$(CURDIR) $(B)/test/unit-tests; rc=$$?; \
	rm -rf $$t; exit $$rc

check-integration: $(B)/anb-agent
	ANB_AGENT=$(CURDIR)/$(B)/anb-agent test/integration/run-all.sh

# The slow fault-matrix tests (a "# slow:" second line; the soak, the
# credentials' expiry); `make check` runs the others.  CI runs both.
check-faults: $(B)/anb-agent
	ANB_SLOW=only ANB_AGENT=$(CURDIR)/$(B)/anb-agent test/integration/run-all.sh fault-

# An EC2 instance in a box (test/e2e/run.sh): user-data → packages → READY
# under PID-1 systemd in a qemu VM, and the fleet lifecycle. Needs root;
# the VM image is cached under build/e2e.
check-e2e: all
	test/e2e/run.sh

# The unit tests (unforked), the daemon in the supervision tests and the
# CLI in the render tests under valgrind; any definite leak or invalid
# access fails.
VALGRIND := valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99
check-valgrind: $(B)/test/unit-tests $(B)/anb-agent
	@t=$$(mktemp -d /tmp/anb-unit.XXXXXX); \
	TMPDIR=$$t CK_FORK=no CK_DEFAULT_TIMEOUT=120 ANB_SRCDIR=$(CURDIR) $(VALGRIND) $(B)/test/unit-tests; rc=$$?; \
	rm -rf $$t; exit $$rc
	ANB_AGENT=$(CURDIR)/$(B)/anb-agent ANB_AGENT_WRAPPER="$(VALGRIND) --log-file=/dev/stderr" \
		test/integration/run-all.sh supervise
	for t in render-cli aws-render; do ANB_AGENT=$(CURDIR)/test/valgrind-agent.sh \
		ANB_AGENT_REAL=$(CURDIR)/$(B)/anb-agent test/integration/run-all.sh $$t || exit 1; done

demo:
	scripts/install-deps.sh
	$(MAKE) all
	scripts/demo.sh $(CURDIR)/$(B)/anb-agent

# The Debian packages (anb-agent, its -dbgsym, anb-sample-app) in build/deb,
# built by dpkg-buildpackage -b -us -uc from debian/.
deb:
	scripts/mkdeb.sh $(CURDIR)/build

# The millisecond timings first, while the machine is quiet: bench.sh's
# load tests leave a load average of ~1.3 that a startup run then measures.
bench: all
	scripts/bench-startup.sh $(CURDIR)/$(B)/anb-agent
	scripts/bench-render.sh $(CURDIR)/$(B)/anb-agent
	scripts/bench.sh $(CURDIR)/$(B)/anb-agent
	scripts/bench-soak.sh $(CURDIR)/$(B)/anb-agent
	scripts/bench-scaleout.sh $(CURDIR)/$(B)/anb-agent

install: all
	install -Dm0755 $(B)/anb-agent $(DESTDIR)$(SBINDIR)/anb-agent
	install -Dm0644 units/anb-agent.service $(DESTDIR)$(UNITDIR)/anb-agent.service
	for u in units/anb-api.socket units/anb-api.service units/anb-worker.service; do \
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
