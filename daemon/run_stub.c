/* Placeholder until the supervisor lands (issue: supervision). */
#include <sysexits.h>

#include "cli.h"
#include "log.h"

int verb_run(const CliOptions *o, int argc, char **argv) {
        (void) o, (void) argc, (void) argv;
        log_error("run: the supervisor is not built yet");
        return EX_UNAVAILABLE;
}
