#!/bin/sh
# Runs the anb-agent CLI under valgrind for `make check-valgrind`: any
# invalid access or definite leak makes it exit 99 (and the test fail).
exec valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 "${ANB_AGENT_REAL:?}" "$@"
