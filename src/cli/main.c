/* main.c — STUB: the kiln command-line tool (to be written). */
#include "kiln.h"
int main(void) { return 0; }
