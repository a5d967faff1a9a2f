/* SPDX-License-Identifier: MIT */
/* A log file that rotates by size: NAME.log, then NAME.log.1 (the newest) .. NAME.log.KEEP.
 * Lines may be stamped with the time; a write that fails (a full disk) drops the bytes and
 * counts them rather than stopping anyone. */
#ifndef SHMRPC_SUPERVISOR_LOGFILE_H
#define SHMRPC_SUPERVISOR_LOGFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sup_log {
    char *path;       /* LOG_DIR/NAME.log */
    int fd;           /* -1 while it cannot be opened */
    uint64_t size;    /* bytes in the current file */
    uint64_t max;     /* rotate before passing this; 0: never */
    int keep;         /* rotated files kept */
    bool stamp;       /* put the time at the start of each line */
    bool mid_line;    /* the last write did not end a line */
    uint64_t dropped; /* bytes that could not be written */
    const char *kind; /* what path is when it is no regular file ("a FIFO"), else NULL */
} sup_log;

/* Opens (appending to) dir/name; 0, SHMRPC_ENOMEM or SHMRPC_ESYS(errno). A path that is no
 * regular file is refused (SHMRPC_ESYS(EINVAL)), with what it is in l->kind. */
int sup_log_open(sup_log *l, const char *dir, const char *name, uint64_t max, int keep, bool stamp);

/* Writes n bytes, stamping each line start and rotating at a line start (or mid-line when
 * one line alone is longer than max) so that no file passes max. */
void sup_log_write(sup_log *l, const char *data, size_t n);

void sup_log_close(sup_log *l);

/* "2025-01-31T12:34:56.789Z", UTC; out holds at least 25 bytes. */
void sup_log_time(char *out, size_t cap, int64_t unix_ms);

/* Whether fd is systemd's journal: $JOURNAL_STREAM ("DEVICE:INODE", systemd.exec(5)) names
 * the file fd is. Then a line may begin with <N>, its syslog priority. */
bool sup_log_is_journal(int fd);

int64_t sup_unix_ms(void); /* CLOCK_REALTIME in milliseconds */
int64_t sup_mono_ms(void); /* CLOCK_MONOTONIC in milliseconds */

#endif
