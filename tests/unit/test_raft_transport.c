/* placeholder, being written */
#include "test.h"
TEST(placeholder)
{
}
