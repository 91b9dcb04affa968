/*
 * nova-substrate-guestutil: the few guest operations of the activation
 * hook that a shell cannot do, or cannot do precisely enough.
 *
 *   settime NS      set CLOCK_REALTIME to NS nanoseconds since the epoch
 *                   and print the clock read back right after, in ns
 *   reseed HEX      mix the bytes into the kernel entropy pool, crediting
 *                   them, and make the CRNG reseed now
 *   unbase64 PATH   decode base64 read from standard input into PATH,
 *                   which is replaced atomically
 *
 * Several commands may be given in one call ("settime NS reseed HEX"):
 * they run in order, which saves a process start in the guest. The exit
 * status is 0 if all succeeded, 1 if any failed, 2 for a usage error.
 *
 * Under emulation (TCG) starting this static binary costs a few ms,
 * starting date(1) or base64(1) with their shared libraries tens of ms:
 * that is why the hook leaves these small jobs to it.
 *
 * Build: gcc -static -O2 -o nova-substrate-guestutil guestutil.c
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/random.h>

#ifndef RNDRESEEDCRNG
#define RNDRESEEDCRNG _IO('R', 0x07)
#endif

#define PROG "nova-substrate-guestutil"
#define NSEC_PER_SEC 1000000000ULL
#define MAX_SEED_BYTES 4096
#define READ_CHUNK 65536

static void usage(void)
{
    fprintf(stderr,
            "usage: " PROG " COMMAND ARG [COMMAND ARG ...]\n"
            "commands:\n"
            "  settime NS     set the realtime clock (ns since the epoch)\n"
            "  reseed HEX     add HEX bytes to the kernel RNG and reseed it\n"
            "  unbase64 PATH  decode base64 from stdin into PATH\n");
}

static int parse_ns(const char *text, unsigned long long *value)
{
    char *end;
    unsigned long long parsed;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    parsed = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *value = parsed;
    return 0;
}

static int cmd_settime(const char *arg)
{
    struct timespec ts;
    unsigned long long ns;

    if (parse_ns(arg, &ns) != 0) {
        fprintf(stderr, PROG ": settime: invalid nanoseconds '%s'\n", arg);
        return 1;
    }
    ts.tv_sec = (time_t)(ns / NSEC_PER_SEC);
    ts.tv_nsec = (long)(ns % NSEC_PER_SEC);
    if (clock_settime(CLOCK_REALTIME, &ts) != 0) {
        fprintf(stderr, PROG ": settime: clock_settime: %s\n",
                strerror(errno));
        return 1;
    }
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        fprintf(stderr, PROG ": settime: clock_gettime: %s\n",
                strerror(errno));
        return 1;
    }
    printf("%llu\n",
           (unsigned long long)ts.tv_sec * NSEC_PER_SEC +
           (unsigned long long)ts.tv_nsec);
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode HEX into out; returns the byte count, or -1 if HEX is invalid. */
static int decode_hex(const char *hex, unsigned char *out, size_t out_size)
{
    size_t len = strlen(hex);
    size_t i;

    if (len == 0 || len % 2 != 0 || len / 2 > out_size)
        return -1;
    for (i = 0; i < len / 2; i++) {
        int high = hex_value(hex[2 * i]);
        int low = hex_value(hex[2 * i + 1]);

        if (high < 0 || low < 0)
            return -1;
        out[i] = (unsigned char)(high << 4 | low);
    }
    return (int)(len / 2);
}

/*
 * Credit the seed and reseed the CRNG at once: clones restored from one
 * memory image share the CRNG state, and Linux 6.1 would reseed only on
 * its own schedule (every 60 s), so until then they would all produce
 * the same "random" bytes.
 */
static int reseed_ioctl(const unsigned char *seed, int count)
{
    struct rand_pool_info *info;
    int fd;
    int rc = -1;

    info = calloc(1, sizeof(*info) + (size_t)count);
    if (info == NULL) {
        fprintf(stderr, PROG ": reseed: out of memory\n");
        return -1;
    }
    info->entropy_count = count * 8;
    info->buf_size = count;
    memcpy(info->buf, seed, (size_t)count);

    fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, PROG ": reseed: open /dev/urandom: %s\n",
                strerror(errno));
    } else if (ioctl(fd, RNDADDENTROPY, info) != 0) {
        fprintf(stderr, PROG ": reseed: RNDADDENTROPY: %s\n",
                strerror(errno));
    } else if (ioctl(fd, RNDRESEEDCRNG) != 0) {
        fprintf(stderr, PROG ": reseed: RNDRESEEDCRNG: %s\n",
                strerror(errno));
    } else {
        rc = 0;
    }
    if (fd >= 0)
        close(fd);
    explicit_bzero(info, sizeof(*info) + (size_t)count);
    free(info);
    return rc;
}

/* Uncredited, and the CRNG picks it up only at its next reseed. */
static int reseed_write(const unsigned char *seed, int count)
{
    ssize_t written;
    int fd;

    fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, PROG ": reseed: open /dev/urandom: %s\n",
                strerror(errno));
        return -1;
    }
    written = write(fd, seed, (size_t)count);
    if (written != count) {
        fprintf(stderr, PROG ": reseed: write /dev/urandom: %s\n",
                written < 0 ? strerror(errno) : "short write");
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int cmd_reseed(const char *arg)
{
    unsigned char seed[MAX_SEED_BYTES];
    int count;
    int rc;

    count = decode_hex(arg, seed, sizeof(seed));
    if (count < 0) {
        fprintf(stderr, PROG ": reseed: invalid hex seed\n");
        return 1;
    }
    rc = reseed_ioctl(seed, count);
    if (rc != 0) {
        fprintf(stderr, PROG ": reseed: falling back to a plain write\n");
        rc = reseed_write(seed, count);
    }
    explicit_bzero(seed, sizeof(seed));
    return rc == 0 ? 0 : 1;
}

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Decode base64 in place (the output is never longer than the input);
 * whitespace is skipped and '=' ends the data. Returns the decoded
 * length, or -1 if the input is not base64.
 */
static long decode_base64(unsigned char *buf, size_t len)
{
    unsigned long bits = 0;
    int nbits = 0;
    size_t out = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        int value;

        if (buf[i] == '=')
            break;
        if (buf[i] == '\n' || buf[i] == '\r' || buf[i] == ' ' ||
            buf[i] == '\t')
            continue;
        value = base64_value(buf[i]);
        if (value < 0)
            return -1;
        bits = (bits << 6) | (unsigned long)value;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            buf[out++] = (unsigned char)(bits >> nbits);
            bits &= (1UL << nbits) - 1;
        }
    }
    return (long)out;
}

/* Reads all of fd; returns the buffer (caller frees) or NULL. */
static unsigned char *read_all(int fd, size_t *len)
{
    unsigned char *buf = NULL;
    size_t size = 0;
    size_t used = 0;

    for (;;) {
        ssize_t got;

        if (size - used < READ_CHUNK) {
            unsigned char *bigger = realloc(buf, size + READ_CHUNK);

            if (bigger == NULL) {
                free(buf);
                errno = ENOMEM;
                return NULL;
            }
            buf = bigger;
            size += READ_CHUNK;
        }
        got = read(fd, buf + used, size - used);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            free(buf);
            return NULL;
        }
        if (got == 0)
            break;
        used += (size_t)got;
    }
    *len = used;
    return buf;
}

static int write_file(const char *path, const unsigned char *data,
                      size_t len)
{
    char tmp[4096];
    size_t done = 0;
    int fd;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        fprintf(stderr, PROG ": unbase64: path too long\n");
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, PROG ": unbase64: open %s: %s\n", tmp,
                strerror(errno));
        return -1;
    }
    while (done < len) {
        ssize_t written = write(fd, data + done, len - done);

        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0) {
            fprintf(stderr, PROG ": unbase64: write %s: %s\n", tmp,
                    strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        done += (size_t)written;
    }
    if (fchmod(fd, 0600) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, PROG ": unbase64: %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int cmd_unbase64(const char *path)
{
    unsigned char *buf;
    size_t len;
    long decoded;
    int rc;

    buf = read_all(STDIN_FILENO, &len);
    if (buf == NULL) {
        fprintf(stderr, PROG ": unbase64: read stdin: %s\n",
                strerror(errno));
        return 1;
    }
    decoded = decode_base64(buf, len);
    if (decoded < 0) {
        fprintf(stderr, PROG ": unbase64: input is not base64\n");
        free(buf);
        return 1;
    }
    rc = write_file(path, buf, (size_t)decoded);
    free(buf);
    return rc == 0 ? 0 : 1;
}

static int known_command(const char *name)
{
    return strcmp(name, "settime") == 0 || strcmp(name, "reseed") == 0 ||
           strcmp(name, "unbase64") == 0;
}

/*
 * A failed command does not stop the ones after it: a clone whose clock
 * could not be set still needs its RNG reseeded.
 */
int main(int argc, char **argv)
{
    int failed = 0;
    int i;

    if (argc < 3 || (argc - 1) % 2 != 0) {
        usage();
        return 2;
    }
    for (i = 1; i < argc; i += 2) {
        if (!known_command(argv[i])) {
            fprintf(stderr, PROG ": unknown command '%s'\n", argv[i]);
            usage();
            return 2;
        }
    }
    for (i = 1; i < argc; i += 2) {
        int rc;

        if (strcmp(argv[i], "settime") == 0)
            rc = cmd_settime(argv[i + 1]);
        else if (strcmp(argv[i], "reseed") == 0)
            rc = cmd_reseed(argv[i + 1]);
        else
            rc = cmd_unbase64(argv[i + 1]);
        fflush(stdout);
        if (rc != 0)
            failed = 1;
    }
    return failed;
}
