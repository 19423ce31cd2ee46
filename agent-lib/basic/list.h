/* The one intrusive list: a circular doubly linked list whose links live
 * in the elements (as in the Linux kernel), so unlinking is O(1) and needs
 * no search, and an element can unlink itself from a callback.
 *
 *   typedef struct Call { ListLink link; ... } Call;
 *   ListLink calls;  list_init(&calls);
 *   list_append(&calls, &call->link);
 *   list_for_each_safe(l, next, &calls) { Call *c = list_entry(l, Call, link); ... }
 *
 * list_unlink() leaves the element self-linked, so unlinking twice is safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct ListLink {
        struct ListLink *prev, *next;
} ListLink;

#define list_entry(ptr, type, member) ((type *) (void *) ((char *) (ptr) - offsetof(type, member)))
#define list_for_each(l, head) for (ListLink *l = (head)->next; l != (head); l = l->next)
#define list_for_each_safe(l, n, head) \
        for (ListLink *l = (head)->next, *n = l->next; l != (head); l = n, n = l->next)

static inline void list_init(ListLink *head) {
        head->prev = head->next = head;
}
static inline bool list_empty(const ListLink *head) {
        return head->next == head;
}
static inline bool list_linked(const ListLink *l) {
        return l->next && l->next != l;
}
static inline void list_append(ListLink *head, ListLink *l) {
        l->prev = head->prev;
        l->next = head;
        head->prev->next = l;
        head->prev = l;
}
static inline void list_unlink(ListLink *l) {
        if (!l->next)
                return;
        l->prev->next = l->next;
        l->next->prev = l->prev;
        l->prev = l->next = l;
}
static inline size_t list_size(const ListLink *head) {
        size_t n = 0;
        list_for_each(l, head) n++;
        return n;
}
