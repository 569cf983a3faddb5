/*
 * main: hotdata-sim entry point (placeholder while the framework lands; see sim/sim.h).
 */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "hotdata-sim: not built yet\n");
    return 1;
}
