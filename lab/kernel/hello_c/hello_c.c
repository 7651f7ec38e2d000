// SPDX-License-Identifier: GPL-2.0
/*
 * hello_c: the lab's "hello world" kernel module (KernelModule.c), the C twin of hello_rust.
 *
 * On load it greets `times` times (a module parameter, 1 to 10, default 1); on unload it says
 * goodbye. For kernels built without Rust support.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

static int times = 1;
module_param(times, int, 0444);
MODULE_PARM_DESC(times, "How many times to greet on load (1 to 10)");

static int __init hello_init(void)
{
	int n;

	if (times < 1 || times > 10) {
		pr_err("times=%d is outside 1 to 10\n", times);
		return -EINVAL;
	}
	for (n = 1; n <= times; n++)
		pr_info("Hello, world! (greeting %d of %d)\n", n, times);
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("Goodbye, world! (greeted %d times)\n", times);
}

module_init(hello_init);
module_exit(hello_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("bookstore lab");
MODULE_DESCRIPTION("Hello world from C, with a parameter");
