/* An exception with no gates filled: it escalates to a triple fault. */
#include "neg.h"

__attribute__((noreturn)) void guest_main(void);
void guest_main(void)
{
    __asm__ volatile("ud2");
    for (;;)
        ;
}
