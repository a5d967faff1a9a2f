/* SPDX-License-Identifier: MIT */
/* A stand-in service for the supervisor's tests: prints LINES lines of BYTES bytes each
 * (then "chatter: done") on stdout, EVERY_US microseconds apart (default: at once), and
 * waits for a signal.   chatter LINES BYTES [EVERY_US] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: chatter LINES BYTES [EVERY_US]\n");
        return 2;
    }
    int lines = atoi(argv[1]), bytes = atoi(argv[2]), every_us = argc == 4 ? atoi(argv[3]) : 0;
    if (bytes < 20 || bytes > 4000) bytes = 20;
    char line[4096];
    for (int i = 0; i < lines; i++) {
        int n = snprintf(line, sizeof line, "chatter line %05d ", i);
        memset(line + n, 'x', (size_t)(bytes - n - 1));
        line[bytes - 1] = '\n';
        fwrite(line, 1, (size_t)bytes, stdout);
        if (every_us > 0) {
            fflush(stdout);
            struct timespec ts = {every_us / 1000000, (long)(every_us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    printf("chatter: done\n");
    fflush(stdout);
    alarm(120); /* a watchdog: never outlive a broken test by long */
    for (;;)
        pause();
}
