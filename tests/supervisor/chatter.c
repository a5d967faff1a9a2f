/* SPDX-License-Identifier: MIT */
/* A stand-in service for the supervisor's tests: prints LINES lines of BYTES bytes each
 * (then "chatter: done") on stdout and waits for a signal.   chatter LINES BYTES */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: chatter LINES BYTES\n");
        return 2;
    }
    int lines = atoi(argv[1]), bytes = atoi(argv[2]);
    if (bytes < 20 || bytes > 4000) bytes = 20;
    char line[4096];
    for (int i = 0; i < lines; i++) {
        int n = snprintf(line, sizeof line, "chatter line %05d ", i);
        memset(line + n, 'x', (size_t)(bytes - n - 1));
        line[bytes - 1] = '\n';
        fwrite(line, 1, (size_t)bytes, stdout);
    }
    printf("chatter: done\n");
    fflush(stdout);
    alarm(120); /* a watchdog: never outlive a broken test by long */
    for (;;)
        pause();
}
