# ruff: noqa: E501 - real logs have long lines
"""The failing line: which line of a failed step's log says why it failed.

Each case is a real-looking log (as CI tools print it) and the line a person
would point at; the generic exit-code lines every failure ends with never win
over a line that says more.
"""

from __future__ import annotations

import pytest

from ledger.failures import (
    Kind,
    Line,
    best_of,
    clean,
    failure_action,
    kind_of,
    pick_for_step,
    pick_line,
    pick_message,
)


def log(text: str, *, error_lines: tuple[int, ...] = ()) -> list[Line]:
    """Lines of ``text`` (its first line break dropped), numbered from 1."""
    rows = text.removeprefix("\n").splitlines()
    return [
        Line(str(n), "error" if n in error_lines else "info", "", row)
        for n, row in enumerate(rows, start=1)
    ]


PYTHON = """
Run python deploy.py --env staging
Connecting to staging...
Traceback (most recent call last):
  File "/home/runner/_work/app/deploy.py", line 41, in <module>
    main()
  File "/home/runner/_work/app/deploy.py", line 37, in main
    migrate(conn)
  File "/home/runner/_work/app/migrate.py", line 12, in migrate
    raise MigrationError(f"migration {name} failed: {reason}")
migrate.MigrationError: migration 0042_users failed: relation "users" already exists
Error: Process completed with exit code 1.
"""

PYTHON_CHAINED = """
Traceback (most recent call last):
  File "app.py", line 3, in load
    return settings["DATABASE_URL"]
           ~~~~~~~~^^^^^^^^^^^^^^^^
KeyError: 'DATABASE_URL'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "app.py", line 9, in <module>
    load()
  File "app.py", line 5, in load
    raise RuntimeError("DATABASE_URL is not set")
RuntimeError: DATABASE_URL is not set
##[error]Process completed with exit code 1.
"""

PYTEST = """
============================= test session starts ==============================
collected 12 items

tests/test_api.py ....F.......                                           [100%]

=================================== FAILURES ===================================
________________________________ test_login ____________________________________

    def test_login():
>       assert client.post("/login").status_code == 200
E       assert 401 == 200

tests/test_api.py:14: AssertionError
=========================== short test summary info ============================
FAILED tests/test_api.py::test_login - assert 401 == 200
========================= 1 failed, 11 passed in 0.42s =========================
Error: Process completed with exit code 1.
"""

NODE = """
> web@1.4.0 build
> webpack --mode production

node:internal/modules/cjs/loader:1080
  throw err;
  ^

Error: Cannot find module 'webpack-cli/package.json'
Require stack:
- /home/runner/_work/web/node_modules/webpack/bin/webpack.js
    at Module._resolveFilename (node:internal/modules/cjs/loader:1077:15)
    at Function.resolve (node:internal/modules/cjs/helpers:116:19) {
  code: 'MODULE_NOT_FOUND',
}
npm ERR! code 1
npm ERR! path /home/runner/_work/web
npm ERR! command failed
npm ERR! command sh -c webpack --mode production

npm ERR! A complete log of this run can be found in:
npm ERR!     /home/runner/.npm/_logs/2024-03-02T10_11_12_345Z-debug-0.log
Error: Process completed with exit code 1.
"""

NPM_MISSING_SCRIPT = """
Run npm run build
npm ERR! Missing script: "build"
npm ERR!
npm ERR! To see a list of scripts, run:
npm ERR!   npm run

npm ERR! A complete log of this run can be found in:
npm ERR!     /root/.npm/_logs/2024-03-02T10_11_12_345Z-debug-0.log
Error: Process completed with exit code 1.
"""

GO_TEST = """
=== RUN   TestParse
    parse_test.go:15: Parse("1.2") = 1, want 2
--- FAIL: TestParse (0.00s)
=== RUN   TestFormat
--- PASS: TestFormat (0.00s)
FAIL
FAIL	github.com/acme/app/parse	0.004s
FAIL
Error: Process completed with exit code 1.
"""

GO_PANIC = """
starting server on :8080
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a2b3c]

goroutine 1 [running]:
main.(*Server).Start(0x0)
	/home/runner/_work/app/server.go:42 +0x1c
main.main()
	/home/runner/_work/app/main.go:12 +0x1d
exit status 2
"""

SHELL = """
+ echo 'Deploying to production'
Deploying to production
+ kubectl apply -f k8s/
./deploy.sh: line 12: kubectl: command not found
Error: Process completed with exit code 127.
"""

JAVA_GRADLE = """
> Task :compileJava FAILED
/home/runner/_work/app/src/main/java/com/acme/App.java:5: error: cannot find symbol
        Foo foo = new Foo();
        ^
  symbol:   class Foo
  location: class App
1 error

FAILURE: Build failed with an exception.

* What went wrong:
Execution failed for task ':compileJava'.
> Compilation failed; see the compiler error output for details.

* Try:
> Run with --stacktrace option to get the stack trace.

BUILD FAILED in 3s
Error: Process completed with exit code 1.
"""

JAVA_EXCEPTION = """
Starting application...
Exception in thread "main" java.lang.IllegalStateException: Failed to load ApplicationContext
	at com.acme.App.main(App.java:10)
Caused by: java.net.ConnectException: Connection refused
	at java.base/sun.nio.ch.Net.connect0(Native Method)
	... 12 more
"""

MAVEN = """
[INFO] BUILD FAILURE
[INFO] ------------------------------------------------------------------------
[INFO] Total time:  4.120 s
[INFO] ------------------------------------------------------------------------
[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.11.0:compile (default-compile) on project app: Compilation failure
[ERROR] /home/runner/_work/app/src/main/java/App.java:[5,8] cannot find symbol
[ERROR]   symbol:   class Foo
[ERROR] -> [Help 1]
[ERROR]
[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.
[ERROR] Re-run Maven using the -X switch to enable full debug logging.
"""

CHINESE = """
开始部署 axi-star-cloud
上传构建产物到 10.0.0.5
错误：部署失败，无法连接到服务器 10.0.0.5:22（连接超时）
部署脚本退出，exit code 255
"""

ANSI = """
\x1b[36mStep 4/9\x1b[0m : RUN npm ci
\x1b[1m\x1b[31mERROR:\x1b[0m failed to solve: process "/bin/sh -c npm ci" did not complete successfully: exit code: 1
"""

RUST = """
   Compiling app v0.1.0 (/home/runner/_work/app)
error[E0425]: cannot find value `port` in this scope
 --> src/main.rs:4:20
  |
4 |     println!("{}", port);
  |                    ^^^^ not found in this scope

error: could not compile `app` (bin "app") due to previous error
Error: Process completed with exit code 101.
"""

ONLY_EXIT = """
Building...
Done building.
Error: Process completed with exit code 2.
"""

TWO_BLOCKS = """
Error: flaky network, retrying (1/3)
retry succeeded
Running migrations
fatal: could not read Username for 'https://github.com': terminal prompts disabled
Error: Process completed with exit code 128.
"""


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "python",
            PYTHON,
            'migrate.MigrationError: migration 0042_users failed: relation "users" already exists',
        ),
        ("python chained", PYTHON_CHAINED, "RuntimeError: DATABASE_URL is not set"),
        ("pytest", PYTEST, "FAILED tests/test_api.py::test_login - assert 401 == 200"),
        ("node", NODE, "Error: Cannot find module 'webpack-cli/package.json'"),
        ("npm missing script", NPM_MISSING_SCRIPT, 'npm ERR! Missing script: "build"'),
        ("go test", GO_TEST, "--- FAIL: TestParse (0.00s)"),
        (
            "go panic",
            GO_PANIC,
            "panic: runtime error: invalid memory address or nil pointer dereference",
        ),
        ("shell", SHELL, "./deploy.sh: line 12: kubectl: command not found"),
        (
            "gradle",
            JAVA_GRADLE,
            "/home/runner/_work/app/src/main/java/com/acme/App.java:5: error: cannot find symbol",
        ),
        (
            "java exception",
            JAVA_EXCEPTION,
            'Exception in thread "main" java.lang.IllegalStateException: '
            "Failed to load ApplicationContext",
        ),
        (
            "maven",
            MAVEN,
            "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:"
            "3.11.0:compile (default-compile) on project app: Compilation failure",
        ),
        ("chinese", CHINESE, "错误：部署失败，无法连接到服务器 10.0.0.5:22（连接超时）"),
        (
            "ansi",
            ANSI,
            'ERROR: failed to solve: process "/bin/sh -c npm ci" did not complete '
            "successfully: exit code: 1",
        ),
        ("rust", RUST, "error[E0425]: cannot find value `port` in this scope"),
        ("only an exit code", ONLY_EXIT, "Error: Process completed with exit code 2."),
        (
            "the last block wins",
            TWO_BLOCKS,
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
        ),
    ],
)
def test_the_line_that_explains_a_failure(name: str, text: str, expected: str) -> None:
    lines = log(text)
    pick = pick_line(lines)
    assert pick is not None, name
    assert pick.text == expected
    assert pick.line is not None
    assert clean(pick.line.text).strip() == expected  # the link points at that very line


def test_generic_lines_count_only_when_nothing_else_does() -> None:
    pick = pick_line(log(ONLY_EXIT))
    assert pick is not None
    assert pick.kind == Kind.GENERIC
    assert pick_line(log(SHELL)).kind == Kind.STRONG  # type: ignore[union-attr]


def test_a_log_without_any_error_explains_nothing() -> None:
    assert pick_line(log("Building...\nDone.\n")) is None
    assert pick_line([]) is None


def test_lines_at_level_error_hint_and_shapes_win_over_them() -> None:
    lines = log("Uploading artefacts\nupload rejected by the server\nall done", error_lines=(2,))
    pick = pick_line(lines)
    assert pick is not None
    assert (pick.text, pick.kind) == ("upload rejected by the server", Kind.HINT)
    lines = log("Error: disk quota exceeded\nsomething went wrong", error_lines=(2,))
    assert pick_line(lines).text == "Error: disk quota exceeded"  # type: ignore[union-attr]


def test_a_ci_error_marker_makes_a_line_an_error_line() -> None:
    pick = pick_line(log("##[error]Unable to locate executable file: terraform\nbye"))
    assert pick is not None
    assert pick.text == "Unable to locate executable file: terraform"
    assert kind_of("Unable to locate executable file: terraform") == Kind.HINT


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Error: Process completed with exit code 1.", Kind.GENERIC),
        ("make: *** [Makefile:12: build] Error 2", Kind.GENERIC),
        ("exit status 2", Kind.GENERIC),
        ("exit 1", Kind.GENERIC),
        ("exited with 137.", Kind.GENERIC),
        ("npm ERR! code ELIFECYCLE", Kind.NONE),
        ("[ERROR] -> [Help 1]", Kind.NONE),
        ("BUILD FAILED in 3s", Kind.HINT),
        ("TypeError: x is not a function", Kind.STRONG),
        ("2024-03-02T10:11:12.123Z FATAL could not bind", Kind.STRONG),
        ("部署失败", Kind.STRONG),
        ("all good", Kind.NONE),
        ("", Kind.NONE),
    ],
)
def test_kinds_of_single_lines(text: str, kind: Kind) -> None:
    assert kind_of(clean(text)) == kind


def test_lines_after_the_step_ended_count_only_when_the_earlier_ones_say_nothing() -> None:
    lines = [
        Line("1", "info", "2024-01-01T00:00:01.000Z", "Error: the real cause"),
        Line("2", "info", "2024-01-01T00:00:08.000Z", "Cleaning up"),
        Line("3", "info", "2024-01-01T00:00:09.000Z", "Error: cleanup could not remove /tmp/x"),
    ]
    assert pick_for_step(lines, "2024-01-01T00:00:05.000Z").text == "Error: the real cause"  # type: ignore[union-attr]
    assert pick_for_step(lines, None).text == "Error: cleanup could not remove /tmp/x"  # type: ignore[union-attr]
    quiet = [Line("1", "info", "2024-01-01T00:00:01.000Z", "exit code 1"), lines[2]]
    late = pick_for_step(quiet, "2024-01-01T00:00:05.000Z")
    assert late is not None
    assert late.text == "Error: cleanup could not remove /tmp/x"


def test_a_message_is_read_like_a_log() -> None:
    pick = pick_message("deploy failed\nError: ssh: connect to host 10.0.0.5 port 22: timed out")
    assert pick is not None
    assert pick.line is None
    assert pick.text == "Error: ssh: connect to host 10.0.0.5 port 22: timed out"
    assert pick_message("  ") is None
    assert pick_message(None) is None


def test_best_of_prefers_what_says_something() -> None:
    generic = pick_line(log(ONLY_EXIT))
    strong = pick_line(log(SHELL))
    assert best_of(generic, strong) is strong
    assert best_of(None, generic) is generic
    assert best_of(None, None) is None


@pytest.mark.parametrize(
    ("status", "was_failed", "refolded", "logged", "action"),
    [
        ("failure", False, True, False, "explain"),
        ("failure", True, False, True, "explain"),
        ("failure", True, False, False, None),
        ("success", True, True, False, "clear"),
        ("running", True, True, True, "clear"),
        ("running", False, True, True, None),
    ],
)
def test_when_a_write_explains_a_deployment_again(
    status: str, was_failed: bool, refolded: bool, logged: bool, action: str | None
) -> None:
    assert failure_action(status, was_failed=was_failed, refolded=refolded, logged=logged) == action
