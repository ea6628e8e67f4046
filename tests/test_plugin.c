/* Transport plugins: loaded on the first use of their scheme from
 * DMAQ_PLUGIN_PATH or next to libdmaq.so; every way of failing to load one
 * is a clear DMAQ_ESCHEME, and a program that uses only shm:// never looks.
 * The plugins are builds of tests/plugin_alias.c. Each test is its own
 * process, so each starts with nothing loaded. */
#include <criterion/criterion.h>

#include "harness.h"

static void round_trip(const char *scheme)
{
    char shm[128], alias[160];
    unique_uri(shm, sizeof shm, "plugin");
    snprintf(alias, sizeof alias, "%s://%s", scheme, shm + strlen("shm://"));
    dmaq_sub *sub;
    dmaq_pub *pub;
    cr_assert_eq(dmaq_sub_open(shm, NULL, &sub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_open(alias, NULL, &pub), 0, "%s", dmaq_last_error());
    cr_assert_eq(dmaq_pub_send(pub, "through the plugin", 18, 0), 0, "%s", dmaq_last_error());
    char buf[64];
    size_t len;
    cr_assert_eq(dmaq_sub_recv(sub, buf, sizeof buf, &len, 0), 0, "%s", dmaq_last_error());
    cr_assert(len == 18 && memcmp(buf, "through the plugin", 18) == 0);
    dmaq_stat st = {.size = sizeof st};
    cr_assert_geq(dmaq_channel_stat(alias, &st, NULL, 0), 0, "%s", dmaq_last_error());
    cr_expect_eq(st.publishers, 1);
    cr_expect_eq(st.subscribers, 1);
    dmaq_pub_close(pub);
    dmaq_sub_close(sub);
    cr_assert_eq(dmaq_channel_unlink(alias), 0, "%s", dmaq_last_error());
}

static void expect_scheme_error(const char *uri, const char *needle)
{
    dmaq_pub *pub = (dmaq_pub *)1;
    cr_assert_eq(dmaq_pub_open(uri, NULL, &pub), DMAQ_ESCHEME, "opening %s", uri);
    cr_expect_null(pub);
    cr_expect(strstr(dmaq_last_error(), needle), "'%s' does not say '%s'", dmaq_last_error(), needle);
}

Test(plugin, loaded_from_DMAQ_PLUGIN_PATH)
{
    setenv("DMAQ_PLUGIN_PATH", "/nonexistent:" DMAQ_TEST_PLUGIN_DIR, 1);
    cr_assert_eq(dmaq_transport_available("testalias"), 1, "%s", dmaq_last_error());
    round_trip("testalias");
}

Test(plugin, loaded_from_next_to_libdmaq)
{
    unsetenv("DMAQ_PLUGIN_PATH");
    round_trip("testnext");
}

Test(plugin, a_missing_plugin_is_named)
{
    setenv("DMAQ_PLUGIN_PATH", DMAQ_TEST_PLUGIN_DIR, 1);
    expect_scheme_error("nosuch://x", "libdmaq-nosuch.so");
    expect_scheme_error("nosuch://x", DMAQ_TEST_PLUGIN_DIR);
    cr_expect_eq(dmaq_transport_available("nosuch"), 0);
    cr_expect(strstr(dmaq_last_error(), "libdmaq-nosuch.so"), "%s", dmaq_last_error());
}

Test(plugin, a_plugin_without_its_entry_point)
{
    setenv("DMAQ_PLUGIN_PATH", DMAQ_TEST_PLUGIN_DIR, 1);
    expect_scheme_error("testnoentry://x", "has no dmaq_transport_plugin()");
}

Test(plugin, a_plugin_for_another_scheme)
{
    setenv("DMAQ_PLUGIN_PATH", DMAQ_TEST_PLUGIN_DIR, 1);
    expect_scheme_error("testwrong://x", "is for scheme 'other'");
}

Test(plugin, a_scheme_cannot_name_a_path)
{
    setenv("DMAQ_PLUGIN_PATH", DMAQ_TEST_PLUGIN_DIR, 1);
    expect_scheme_error("../plugins/libdmaq-testalias://x", "is not a transport name");
    expect_scheme_error(".hidden://x", "is not a transport name");
}

Test(plugin, a_plugin_that_will_not_load_says_why)
{
    char dir[] = "/tmp/dmaq-test-plugin-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/libdmaq-testbroken.so", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("not a shared object", f);
    fclose(f);
    setenv("DMAQ_PLUGIN_PATH", dir, 1);
    expect_scheme_error("testbroken://x", "would not load");
    expect_scheme_error("testbroken://x", path); /* the loader's reason names the file */
    unlink(path);
    rmdir(dir);
}
