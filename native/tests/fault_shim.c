/* fault_shim.c — an LD_PRELOAD library for fault-injection tests of the real trainer: write(2) to a file whose path
 * contains HQ_FAULT_WRITE_MATCH writes half of the first request, then fails with ENOSPC ("disk full"), as a disk
 * that fills up in the middle of a file does. Every other write goes through unchanged. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ssize_t write(int fd, const void* buf, size_t n) {
    static ssize_t (*real_write)(int, const void*, size_t) = NULL;
    if (!real_write) real_write = (ssize_t (*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
    const char* match = getenv("HQ_FAULT_WRITE_MATCH");
    if (match && *match && fd > 2) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        const ssize_t k = readlink(link, path, sizeof path - 1);
        if (k > 0) {
            path[k] = 0;
            if (strstr(path, match)) {
                if (n > 1 && lseek(fd, 0, SEEK_CUR) == 0) return real_write(fd, buf, n / 2);
                errno = ENOSPC;
                return -1;
            }
        }
    }
    return real_write(fd, buf, n);
}
