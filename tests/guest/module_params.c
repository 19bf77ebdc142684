// SPDX-License-Identifier: GPL-2.0
/*
 * oxdax module parameters: good values load and show in sysfs, bad ones fail
 * the load with EINVAL and exactly one kernel log line naming oxdax.
 */
#include "kselftest_harness.h"
#include "oxdax_test.h"

#define ENGINE_PARAM OXDAX_SYSFS "/parameters/fault_engine"

FIXTURE(module) {
	struct kmsg_watch kmsg;
};

FIXTURE_SETUP(module)
{
	if (oxdax_loaded())
		ASSERT_EQ(0, oxdax_unload());
	ASSERT_EQ(0, kmsg_watch_start(&self->kmsg));
}

FIXTURE_TEARDOWN(module)
{
	if (oxdax_loaded())
		EXPECT_EQ(0, oxdax_unload());
	kmsg_watch_stop(&self->kmsg);
}

static void expect_engine(struct __test_metadata *_metadata, const char *want)
{
	char buf[64];

	ASSERT_EQ(0, read_text(ENGINE_PARAM, buf, sizeof(buf)));
	EXPECT_STREQ(want, buf);
}

TEST_F(module, default_engine_is_oxdax)
{
	char version[32], line[96];

	ASSERT_EQ(0, oxdax_load(""));
	expect_engine(_metadata, "oxdax\n");
	ASSERT_EQ(0, read_text("/oxdax/tests/VERSION", version, sizeof(version)));
	version[strcspn(version, "\n")] = '\0';
	snprintf(line, sizeof(line), "oxdax: version %s loaded (fault engine: oxdax)", version);
	EXPECT_EQ(1, kmsg_count(&self->kmsg, line));
}

TEST_F(module, iomap_engine)
{
	ASSERT_EQ(0, oxdax_load("fault_engine=iomap"));
	expect_engine(_metadata, "iomap\n");
	EXPECT_EQ(1, kmsg_count(&self->kmsg, "oxdax: version"));
	EXPECT_EQ(1, kmsg_count(&self->kmsg, "(fault engine: iomap)"));
}

TEST_F(module, parameter_is_read_only_at_runtime)
{
	ASSERT_EQ(0, oxdax_load(""));
	EXPECT_EQ(-1, open(ENGINE_PARAM, O_WRONLY));
	EXPECT_EQ(EACCES, errno);
	expect_engine(_metadata, "oxdax\n");
}

TEST_F(module, bad_values_fail_cleanly)
{
	static const char *const bad[] = {
		"fault_engine=bogus", "fault_engine=", "fault_engine",
		"fault_engine=OXDAX", "fault_engine=oxdax2", "fault_engine=ox",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kmsg_watch w;

		ASSERT_EQ(0, kmsg_watch_start(&w));
		EXPECT_EQ(-EINVAL, oxdax_load(bad[i])) TH_LOG("params '%s'", bad[i]);
		EXPECT_FALSE(oxdax_loaded());
		/* One line naming oxdax and the parameter, nothing else from oxdax. */
		EXPECT_EQ(1, kmsg_count(&w, "oxdax")) TH_LOG("params '%s': log:\n%s", bad[i], w.text);
		EXPECT_EQ(1, kmsg_count(&w, "invalid for parameter `fault_engine'"));
		kmsg_watch_stop(&w);
	}
	/* A failed load leaves nothing behind: a good one works right after. */
	ASSERT_EQ(0, oxdax_load("fault_engine=oxdax"));
	expect_engine(_metadata, "oxdax\n");
}

TEST_F(module, unknown_parameter_is_ignored_with_one_line)
{
	/* Kernel policy for every module: warn and ignore. */
	ASSERT_EQ(0, oxdax_load("no_such_parameter=1"));
	EXPECT_EQ(1, kmsg_count(&self->kmsg, "oxdax: unknown parameter 'no_such_parameter' ignored"));
	expect_engine(_metadata, "oxdax\n");
}

TEST_F(module, second_load_is_eexist)
{
	ASSERT_EQ(0, oxdax_load(""));
	EXPECT_EQ(-EEXIST, oxdax_load(""));
	EXPECT_TRUE(oxdax_loaded());
}

TEST_F(module, unload_logs_and_removes_sysfs)
{
	ASSERT_EQ(0, oxdax_load(""));
	ASSERT_EQ(0, oxdax_unload());
	EXPECT_FALSE(oxdax_loaded());
	EXPECT_EQ(1, kmsg_count(&self->kmsg, "oxdax: unloaded"));
	EXPECT_EQ(-ENOENT, oxdax_unload());
}

TEST_HARNESS_MAIN
