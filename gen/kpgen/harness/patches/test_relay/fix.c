// SPDX-License-Identifier: GPL-2.0-only
/* Replacement for kpgen_test_relay_write(): the same, as version 2. */
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/string.h>

static int test_relay_write(const char *path, const char *value,
			    unsigned int ms, int *version)
{
	struct file *file;
	loff_t pos = 0;
	ssize_t ret;

	file = filp_open(path, O_WRONLY, 0);
	if (IS_ERR(file))
		return PTR_ERR(file);
	ret = kernel_write(file, value, strlen(value), &pos);
	filp_close(file, NULL);
	msleep(ms);
	*version = 2;
	return ret;
}
