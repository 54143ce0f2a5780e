/* arena.c — bump allocation in chunks, freed all at once (the IR's memory). */
#include "core/core.h"
#include <stdlib.h>
#include <string.h>

struct kiln_arena_chunk {
    kiln_arena_chunk *next;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

struct kiln_arena_cleanup {
    kiln_arena_cleanup *next;
    void (*fn)(void *);
    void *arg;
};

bool kiln_arena_on_free(kiln_arena *a, void (*fn)(void *), void *arg) {
    kiln_arena_cleanup *c = kiln_arena_alloc(a, sizeof *c);
    if (!c) return false;
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
    return true;
}

void kiln_arena_init(kiln_arena *a) { memset(a, 0, sizeof *a); }

void kiln_arena_free(kiln_arena *a) {
    for (kiln_arena_cleanup *c = a->cleanups; c; c = c->next) c->fn(c->arg);
    for (kiln_arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    memset(a, 0, sizeof *a);
}

void *kiln_arena_alloc(kiln_arena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (!a->head || a->used + size > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4096;
        if (cap > (1u << 20)) cap = 1u << 20;
        if (cap < size) cap = size;
        kiln_arena_chunk *c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->cap = cap;
        a->head = c;
        a->cap = cap;
        a->used = 0;
        a->total += cap;
    }
    void *p = a->head->data + a->used;
    a->used += size;
    memset(p, 0, size);
    return p;
}

char *kiln_arena_strndup(kiln_arena *a, const char *s, size_t n) {
    char *d = kiln_arena_alloc(a, n + 1);
    if (d) memcpy(d, s, n);
    return d;
}

char *kiln_arena_strdup(kiln_arena *a, const char *s) { return kiln_arena_strndup(a, s, strlen(s)); }
