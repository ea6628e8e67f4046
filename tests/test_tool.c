/* The dmaq tool end to end, as a user runs it: every command, its output,
 * its exit status, and its errors. */
#include <criterion/criterion.h>
#include <fcntl.h>

#include "harness.h"

/* Run shell command `line`; its output (stdout and stderr) into out.
 * Returns its exit status. */
static int run_tool_line(const char *line, char *out, size_t cap)
{
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "{ %s ; } 2>&1", line);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Run the tool with `args`. */
static int run_tool(const char *args, char *out, size_t cap)
{
    char line[600];
    snprintf(line, sizeof line, "%s %s", DMAQ_TOOL, args);
    return run_tool_line(line, out, cap);
}

/* The tool: ls marks a channel whose peers all died as stale, gc removes
 * it, rm removes by name, and wrong arguments exit 2 with the usage. */
Test(tool, ls_gc_rm)
{
    char dir[64], args[256], out[8192];
    make_dir(dir, sizeof dir);
    dmaq_options o = in_dir(dir, 1 << 16);
    dmaq_pub *pub;
    cr_assert_eq(dmaq_pub_open("shm://in-use", &o, &pub), 0);
    pid_t dead = attached_child(dir, "orphan");
    kill(dead, SIGKILL);
    waitpid(dead, NULL, 0);

    snprintf(args, sizeof args, "ls --dir %s", dir);
    cr_assert_eq(run_tool(args, out, sizeof out), 0, "%s", out);
    char *orphan = strstr(out, "orphan "), *in_use = strstr(out, "in-use ");
    cr_assert(orphan && in_use, "%s", out);
    cr_expect(strncmp(strchr(orphan, '\n') - 5, "stale", 5) == 0, "orphan not marked stale:\n%s", out);
    cr_expect(strncmp(strchr(in_use, '\n') - 4, "live", 4) == 0, "in-use not marked live:\n%s", out);

    snprintf(args, sizeof args, "gc --dir %s", dir);
    cr_assert_eq(run_tool(args, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "removed 1 stale file "), "%s", out);
    cr_expect_eq(count_files(dir, "dmaq."), 1);

    snprintf(args, sizeof args, "stat shm://%s/in-use", dir);
    cr_assert_eq(run_tool(args, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "publishers   1"), "%s", out);
    dmaq_pub_close(pub);
    snprintf(args, sizeof args, "rm shm://%s/in-use", dir);
    cr_assert_eq(run_tool(args, out, sizeof out), 0, "%s", out);
    cr_expect_eq(count_files(dir, "dmaq."), 0);
    cr_expect_eq(run_tool(args, out, sizeof out), 1, "removing it twice fails");
    cr_expect(strstr(out, "does not exist"), "%s", out);

    cr_expect_eq(run_tool("frobnicate", out, sizeof out), 2);
    cr_expect(strstr(out, "unknown command 'frobnicate'") && strstr(out, "usage:"), "%s", out);
    cr_expect_eq(run_tool("ls --bogus", out, sizeof out), 2);
    cr_expect(strstr(out, "unexpected argument '--bogus'"), "%s", out);
    cr_expect_eq(run_tool("gc --dir /nonexistent/x", out, sizeof out), 1);
    cr_expect(strstr(out, "does not exist"), "%s", out);
    cr_expect_eq(run_tool("stat", out, sizeof out), 2);
    cr_expect_eq(run_tool("gc --help", out, sizeof out), 0);
    remove_dir(dir);
}


/* Run `cmd` (a shell command line where "DMAQ" stands for the tool) and
 * return its exit status, its output in out. */
static int sh(const char *cmd, char *out, size_t cap)
{
    char line[2048], *o = line;
    for (const char *c = cmd; *c && o < line + sizeof line - 200; c++) {
        if (strncmp(c, "DMAQ", 4) == 0) {
            o += sprintf(o, "%s", DMAQ_TOOL);
            c += 3;
        } else {
            *o++ = *c;
        }
    }
    *o = 0;
    return run_tool_line(line, out, cap);
}

/* pub and sub in separate processes: lines, whole files, hex, counts and
 * timeouts, creation options. */
Test(tool, pub_and_sub)
{
    char out[8192], cmd[1024], uri[128];
    unique_uri(uri, sizeof uri, "tool");
    /* A subscriber first (it creates the queue), then lines from a publisher. */
    snprintf(cmd, sizeof cmd,
             "DMAQ sub %s --kind queue --count 3 --timeout 10 > /tmp/dmaq-tool-%d.out & "
             "printf 'one\\ntwo\\nthree\\n' | DMAQ pub %s --kind queue && wait $! && cat /tmp/dmaq-tool-%d.out",
             uri, (int)getpid(), uri, (int)getpid());
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect_str_eq(out, "one\ntwo\nthree\n");

    /* A whole file as one message, shown as hex. */
    snprintf(cmd, sizeof cmd,
             "DMAQ sub %s --count 1 --timeout 10 --format hex > /tmp/dmaq-tool-%d.out & "
             "printf 'AB\\001' > /tmp/dmaq-tool-%d.bin; DMAQ pub %s --file /tmp/dmaq-tool-%d.bin && wait $! && "
             "cat /tmp/dmaq-tool-%d.out",
             uri, (int)getpid(), (int)getpid(), uri, (int)getpid(), (int)getpid());
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "3 bytes") && strstr(out, "41 42 01") && strstr(out, "AB."), "%s", out);

    /* Nothing comes: --count then fails, a bare --timeout just ends. */
    snprintf(cmd, sizeof cmd, "DMAQ sub %s --count 2 --timeout 0.2", uri);
    cr_expect_eq(sh(cmd, out, sizeof out), 1);
    cr_expect(strstr(out, "timed out after 0 of 2"), "%s", out);
    snprintf(cmd, sizeof cmd, "DMAQ sub %s --timeout 0.2", uri);
    cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s", out);

    /* Options that disagree with the channel are refused by the library. */
    snprintf(cmd, sizeof cmd, "echo x | DMAQ pub %s --kind broadcast", uri);
    cr_expect_eq(sh(cmd, out, sizeof out), 1);
    cr_expect(strstr(out, "was created as queue"), "%s", out);
    snprintf(cmd, sizeof cmd, "DMAQ pub %s --file /nonexistent/file", uri);
    cr_expect_eq(sh(cmd, out, sizeof out), 1);
    cr_expect(strstr(out, "No such file"), "%s", out);
    dmaq_channel_unlink(uri);
    snprintf(cmd, sizeof cmd, "rm -f /tmp/dmaq-tool-%d.out /tmp/dmaq-tool-%d.bin", (int)getpid(), (int)getpid());
    sh(cmd, out, sizeof out);
}

/* stat: text, JSON, and --watch refreshing. */
Test(tool, stat_json_and_watch)
{
    char out[16384], cmd[1024], uri[128];
    unique_uri(uri, sizeof uri, "toolstat");
    dmaq_pub *pub;
    dmaq_sub *sub;
    cr_assert_eq(dmaq_pub_open(uri, NULL, &pub), 0);
    cr_assert_eq(dmaq_sub_open(uri, NULL, &sub), 0);
    cr_assert_eq(dmaq_pub_send(pub, "abc", 3, 0), 0);
    snprintf(cmd, sizeof cmd, "DMAQ stat %s --json", uri);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "\"published\":1,\"publishers\":1,\"subscribers\":1"), "%s", out);
    cr_expect(strstr(out, "\"subscriber\":[{\"pid\":") && strstr(out, "\"alive\":true,\"received\":0,\"lag\":1"),
              "%s", out);
    snprintf(cmd, sizeof cmd, "DMAQ stat %s --watch --interval 0.05 --iterations 3", uri);
    cr_assert_eq(sh(cmd, out, sizeof out), 0, "%s", out);
    int renders = 0;
    for (char *p = out; (p = strstr(p, "published    1")); p++)
        renders++;
    cr_expect_eq(renders, 3, "--watch --iterations 3 printed %d times:\n%s", renders, out);
    cr_expect_eq(sh("DMAQ stat x --watch --iterations -1", out, sizeof out), 2, "%s", out);
    dmaq_sub_close(sub);
    dmaq_pub_close(pub);
    dmaq_channel_unlink(uri);
}

/* Every command has --help (exit 0) and says what is wrong with bad
 * arguments (exit 2). */
Test(tool, help_and_bad_arguments)
{
    char out[8192], cmd[256];
    const char *names[] = {"ls", "stat", "pub", "sub", "gc", "rm", "bench", "help"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(cmd, sizeof cmd, "DMAQ %s --help", names[i]);
        cr_expect_eq(sh(cmd, out, sizeof out), 0, "%s: %s", cmd, out);
        cr_expect(strstr(out, "usage: dmaq") || strstr(out, "dmaq ls [--dir DIR]"), "%s: %s", cmd, out);
    }
    const struct {
        const char *cmd, *says;
    } bad[] = {
        {"DMAQ", "no command given"},
        {"DMAQ stat", "needs a channel name"},
        {"DMAQ stat x --interval 0", "--interval wants"},
        {"DMAQ pub", "needs a channel name"},
        {"DMAQ pub x --capacity lots", "--capacity wants a size"},
        {"DMAQ pub x --policy sometimes", "--policy is block or overwrite"},
        {"DMAQ pub x --file", "--file needs at least one path"},
        {"DMAQ sub x --count 0", "--count wants a number above 0"},
        {"DMAQ sub x --format pretty", "--format is text, hex or raw"},
        {"DMAQ sub x --timeout soon", "--timeout wants a number of seconds"},
        {"DMAQ sub x y", "unexpected argument 'y'"},
        {"DMAQ gc --dir", "--dir needs a value"},
        {"DMAQ bench --full", "unexpected argument '--full'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_eq(sh(bad[i].cmd, out, sizeof out), 2, "%s: %s", bad[i].cmd, out);
        cr_expect(strstr(out, bad[i].says) && strstr(out, "usage: dmaq"), "%s: %s", bad[i].cmd, out);
    }
    cr_expect_eq(sh("DMAQ stat shm://never-made-here", out, sizeof out), 1);
    cr_expect(strstr(out, "does not exist"), "%s", out);
}
