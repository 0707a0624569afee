/*
 * RESP load over a key space of 16-byte keys, key:000000000000 to
 * key:<keyspace-1> (redis-benchmark's `-r` names, so both tools hit the same
 * keys): GET with keys drawn from a Zipf distribution (redis-benchmark and
 * the Debian packages have none), uniform, or each key once in order; or SET
 * of each key once (to fill Redis). Compiled by the bench at run time
 * (bench/load/resp-keys.ts).
 *
 *   resp-keys -p PORT [-c CONNS] [-P PIPELINE] [-n REQUESTS] [-t SECONDS]
 *             [-k KEYSPACE] [-m zipf|uniform|each|set] [-s ZIPF_S] [-d VALUE_BYTES]
 *             [-o FIRST_KEY]
 *
 * One thread, epoll, non-blocking sockets; each connection sends PIPELINE
 * commands and sends the next batch when all their replies are in (as
 * redis-benchmark -P does). Bounded by REQUESTS and by SECONDS. Every reply is
 * parsed, so only complete replies are counted; nil and error replies are
 * counted apart. Prints one line: BENCH_JSON {...}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEY_LEN 16
#define MAX_LATENCY_US 1000000

enum mode { ZIPF, UNIFORM, EACH, SET };

typedef struct {
  int fd;
  char *out;
  size_t out_len, out_sent;
  char *in;
  size_t in_len, in_cap;
  int pending;  /* replies still due for the batch in flight */
  int batch;    /* commands in that batch */
  double sent_at;
} conn_t;

static enum mode mode = ZIPF;
static int port = 0, conns = 50, pipeline = 1, value_bytes = 100;
static long requests = 100000, keyspace = 100000, first_key = 0;
static double seconds_limit = 60, zipf_s = 0.99;
static double *cdf;
static uint32_t *rank_to_key;
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static long issued = 0, replied = 0, nils = 0, errors = 0;
static uint32_t *latency_hist; /* per microsecond, last bucket is "or more" */
static char *value;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "resp-keys: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* xorshift64*: seeded, so the proxy and Redis are asked the same keys. */
static uint64_t next_random(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545F4914F6CDD1DULL;
}

static double next_unit(void) { return (next_random() >> 11) * (1.0 / 9007199254740992.0); }

/*
 * P(rank k) proportional to 1/k^s over 1..keyspace, as a cumulative table;
 * ranks are mapped to keys by a seeded shuffle so the hot keys are spread
 * over the key space rather than being key:0, key:1, ...
 */
static void build_zipf(void) {
  cdf = malloc(sizeof(double) * keyspace);
  rank_to_key = malloc(sizeof(uint32_t) * keyspace);
  if (cdf == NULL || rank_to_key == NULL) die("malloc");
  double sum = 0;
  for (long k = 0; k < keyspace; k++) {
    sum += 1.0 / pow((double)(k + 1), zipf_s);
    cdf[k] = sum;
  }
  for (long k = 0; k < keyspace; k++) cdf[k] /= sum;
  cdf[keyspace - 1] = 1.0;
  for (long k = 0; k < keyspace; k++) rank_to_key[k] = (uint32_t)k;
  for (long k = keyspace - 1; k > 0; k--) {
    long j = (long)(next_random() % (uint64_t)(k + 1));
    uint32_t t = rank_to_key[k];
    rank_to_key[k] = rank_to_key[j];
    rank_to_key[j] = t;
  }
}

static long next_key(void) {
  switch (mode) {
    case ZIPF: {
      double u = next_unit();
      long lo = 0, hi = keyspace - 1;
      while (lo < hi) {
        long mid = (lo + hi) / 2;
        if (cdf[mid] < u) lo = mid + 1;
        else hi = mid;
      }
      return rank_to_key[lo];
    }
    case UNIFORM:
      return (long)(next_random() % (uint64_t)keyspace);
    default:
      return issued % keyspace;
  }
}

/* Appends one command for the next key to the connection's output. */
static void append_command(conn_t *c) {
  char key[KEY_LEN + 1];
  snprintf(key, sizeof key, "key:%012ld", first_key + next_key());
  char *p = c->out + c->out_len;
  if (mode == SET) {
    p += sprintf(p, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", KEY_LEN, key, value_bytes);
    memcpy(p, value, value_bytes);
    p += value_bytes;
    memcpy(p, "\r\n", 2);
    p += 2;
  } else {
    p += sprintf(p, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", KEY_LEN, key);
  }
  c->out_len = p - c->out;
  issued++;
}

static int flush_out(conn_t *c) {
  while (c->out_sent < c->out_len) {
    ssize_t n = write(c->fd, c->out + c->out_sent, c->out_len - c->out_sent);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    c->out_sent += (size_t)n;
  }
  return 1;
}

static void send_batch(conn_t *c, int ep, double deadline) {
  if (issued >= requests || now_s() >= deadline) return;
  c->out_len = c->out_sent = 0;
  c->batch = 0;
  while (c->batch < pipeline && issued < requests) {
    append_command(c);
    c->batch++;
  }
  c->pending = c->batch;
  c->sent_at = now_s();
  int done = flush_out(c);
  if (done < 0) die("write");
  struct epoll_event ev = {.events = EPOLLIN | (done ? 0 : EPOLLOUT), .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
}

/* Length of the line starting at p (up to CRLF), or -1 if incomplete. */
static long line_end(const char *p, size_t len) {
  for (size_t i = 0; i + 1 < len; i++)
    if (p[i] == '\r' && p[i + 1] == '\n') return (long)i;
  return -1;
}

/*
 * Consumes the complete replies at the start of the input; returns how many.
 * Replies are simple strings, errors, integers or bulk strings (GET and SET
 * give no others); anything else is a protocol error.
 */
static int parse_replies(conn_t *c) {
  size_t pos = 0;
  int count = 0;
  while (pos < c->in_len) {
    char *p = c->in + pos;
    size_t left = c->in_len - pos;
    long eol = line_end(p, left);
    if (eol < 0) break;
    if (p[0] == '$') {
      long n = strtol(p + 1, NULL, 10);
      if (n < 0) {
        nils++;
        pos += eol + 2;
      } else {
        if (left < (size_t)eol + 2 + (size_t)n + 2) break;
        pos += eol + 2 + n + 2;
      }
    } else if (p[0] == '+' || p[0] == ':' || p[0] == '-') {
      if (p[0] == '-') {
        if (errors == 0) fprintf(stderr, "resp-keys: error reply: %.*s\n", (int)eol, p);
        errors++;
      }
      pos += eol + 2;
    } else {
      fprintf(stderr, "resp-keys: unexpected reply type '%c'\n", p[0]);
      exit(3);
    }
    count++;
  }
  memmove(c->in, c->in + pos, c->in_len - pos);
  c->in_len -= pos;
  return count;
}

static void record_latency(double seconds, int n) {
  long us = (long)(seconds * 1e6);
  if (us >= MAX_LATENCY_US) us = MAX_LATENCY_US - 1;
  latency_hist[us] += (uint32_t)n;
}

static double percentile_ms(double q) {
  long target = (long)ceil(q * (double)replied), seen = 0;
  for (long us = 0; us < MAX_LATENCY_US; us++) {
    seen += latency_hist[us];
    if (seen >= target && seen > 0) return us / 1000.0;
  }
  return NAN;
}

static void usage(void) {
  fprintf(stderr,
          "usage: resp-keys -p PORT [-c CONNS] [-P PIPELINE] [-n REQUESTS] [-t SECONDS] "
          "[-k KEYSPACE] [-m zipf|uniform|each|set] [-s ZIPF_S] [-d VALUE_BYTES] [-o FIRST_KEY]\n");
  exit(1);
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "p:c:P:n:t:k:m:s:d:o:")) != -1) {
    switch (opt) {
      case 'p': port = atoi(optarg); break;
      case 'c': conns = atoi(optarg); break;
      case 'P': pipeline = atoi(optarg); break;
      case 'n': requests = atol(optarg); break;
      case 't': seconds_limit = atof(optarg); break;
      case 'k': keyspace = atol(optarg); break;
      case 's': zipf_s = atof(optarg); break;
      case 'd': value_bytes = atoi(optarg); break;
      case 'o': first_key = atol(optarg); break;
      case 'm':
        if (strcmp(optarg, "zipf") == 0) mode = ZIPF;
        else if (strcmp(optarg, "uniform") == 0) mode = UNIFORM;
        else if (strcmp(optarg, "each") == 0) mode = EACH;
        else if (strcmp(optarg, "set") == 0) mode = SET;
        else usage();
        break;
      default: usage();
    }
  }
  if (port <= 0 || conns < 1 || pipeline < 1 || requests < 1 || keyspace < 1 ||
      first_key < 0 || first_key + keyspace > 999999999999L || value_bytes < 0 ||
      seconds_limit <= 0)
    usage();
  if (mode == ZIPF) build_zipf();
  latency_hist = calloc(MAX_LATENCY_US, sizeof(uint32_t));
  value = malloc((size_t)value_bytes + 1);
  if (latency_hist == NULL || value == NULL) die("malloc");
  memset(value, 'v', (size_t)value_bytes);

  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  conn_t *cs = calloc((size_t)conns, sizeof(conn_t));
  size_t command_max = 64 + KEY_LEN + (size_t)value_bytes;
  for (int i = 0; i < conns; i++) {
    conn_t *c = &cs[i];
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
    c->out = malloc(command_max * (size_t)pipeline);
    c->in_cap = 65536 + (size_t)value_bytes * 2;
    c->in = malloc(c->in_cap);
    if (c->out == NULL || c->in == NULL) die("malloc");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
  }

  double started = now_s();
  double deadline = started + seconds_limit;
  int active = 0;
  for (int i = 0; i < conns; i++) {
    send_batch(&cs[i], ep, deadline);
    if (cs[i].pending > 0) active++;
  }
  struct epoll_event events[256];
  double last_progress = started;
  while (active > 0) {
    int n = epoll_wait(ep, events, 256, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    double t = now_s();
    if (n == 0 && t - last_progress > 10) {
      fprintf(stderr, "resp-keys: no reply for 10 s, giving up\n");
      exit(4);
    }
    for (int i = 0; i < n; i++) {
      conn_t *c = events[i].data.ptr;
      if (events[i].events & EPOLLOUT) {
        int done = flush_out(c);
        if (done < 0) die("write");
        if (done) {
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
      }
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          if (c->in_len == c->in_cap) {
            c->in_cap *= 2;
            c->in = realloc(c->in, c->in_cap);
            if (c->in == NULL) die("realloc");
          }
          ssize_t got = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
          if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            die("read");
          }
          if (got == 0) {
            fprintf(stderr, "resp-keys: server closed the connection\n");
            exit(5);
          }
          c->in_len += (size_t)got;
          int replies = parse_replies(c);
          if (replies > c->pending) {
            fprintf(stderr, "resp-keys: more replies than commands\n");
            exit(3);
          }
          c->pending -= replies;
          replied += replies;
          if (replies > 0) last_progress = t;
          if (c->pending == 0) {
            record_latency(now_s() - c->sent_at, c->batch);
            send_batch(c, ep, deadline);
            if (c->pending == 0) {
              active--;
              break;
            }
          }
        }
      }
    }
  }
  double elapsed = now_s() - started;
  printf(
      "BENCH_JSON {\"requests\":%ld,\"seconds\":%.6f,\"rps\":%.1f,\"p50Ms\":%.3f,\"p99Ms\":%.3f,"
      "\"nils\":%ld,\"errors\":%ld}\n",
      replied, elapsed, replied / elapsed, percentile_ms(0.5), percentile_ms(0.99), nils, errors);
  for (int i = 0; i < conns; i++) close(cs[i].fd);
  return errors > 0 ? 6 : 0;
}
