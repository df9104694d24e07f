/**
 * The executor against real processes (no mocks). Tests that switch users need root; they are
 * skipped otherwise.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { systemClock } from "../../lib/adapters/system/clock";
import {
	DEFAULT_PATH,
	effectiveRunUser,
	type ExecResult,
	type ExecSpec,
	resolveUser,
	runProcess,
	STORED_FILE_PATH,
	TailBuffer,
} from "../../lib/adapters/process/executor";

const isRoot = process.getuid?.() === 0;
const itRoot = isRoot ? it : it.skip;

let workRoot: string;

beforeEach(() => {
	workRoot = fs.mkdtempSync(path.join(os.tmpdir(), "executor-test-"));
});

afterEach(() => {
	// Every run removes its working folder, whatever happened.
	expect(fs.readdirSync(workRoot)).toEqual([]);
	fs.rmSync(workRoot, { recursive: true, force: true });
});

function sh(line: string, extra: Partial<ExecSpec> = {}): ExecSpec {
	return { file: "/bin/sh", args: ["-c", line], env: {}, user: null, timeoutMs: 10_000, workRoot, ...extra };
}

/** Pids of the live (non-zombie) members of a process group, from /proc. */
function liveGroupMembers(pgid: number): number[] {
	const out: number[] = [];
	for (const e of fs.readdirSync("/proc")) {
		if (!/^\d+$/.test(e)) continue;
		let stat: string;
		try {
			stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
		} catch {
			continue;
		}
		const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		if (Number(f[2]) === pgid && f[0] !== "Z" && f[0] !== "X") out.push(Number(e));
	}
	return out;
}

function isAlive(pid: number): boolean {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
		const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
		return state !== "Z" && state !== "X";
	} catch {
		return false;
	}
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (!cond()) {
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 20));
	}
}

describe("runProcess: exit status and output", () => {
	const cases: Array<{ name: string; line: string; status: ExecResult["status"]; exitCode: number; output: string }> = [
		{ name: "exit 0", line: "echo hello", status: "succeeded", exitCode: 0, output: "hello\n" },
		{ name: "exit 3", line: "echo bad; exit 3", status: "failed", exitCode: 3, output: "bad\n" },
		{
			name: "stdout and stderr interleaved in write order",
			line: "echo 1; echo 2 >&2; echo 3; echo 4 >&2; printf 5; printf 6 >&2",
			status: "succeeded",
			exitCode: 0,
			output: "1\n2\n3\n4\n56",
		},
		{ name: "no output", line: "exit 0", status: "succeeded", exitCode: 0, output: "" },
		{ name: "stdin is empty", line: "cat; echo done", status: "succeeded", exitCode: 0, output: "done\n" },
	];
	it.each(cases)("$name", async ({ line, status, exitCode, output }) => {
		const res = await runProcess(sh(line));
		expect(res).toMatchObject({ status, exitCode, signal: null, output, error: null });
		expect(res.finishedAt).toBeGreaterThanOrEqual(res.startedAt);
	});

	it("calls onStart once with the start time and the pid, which leads its own process group", async () => {
		const starts: Array<[number, number]> = [];
		const res = await runProcess(sh("echo $$; ps -o pgid= -p $$ 2>/dev/null || cut -d' ' -f5 /proc/$$/stat"), (t, pid) => starts.push([t, pid]));
		expect(res.status).toBe("succeeded");
		expect(starts).toHaveLength(1);
		const [t, pid] = starts[0];
		expect(t).toBe(res.startedAt);
		const [shPid, pgid] = res.output.trim().split(/\s+/).map(Number);
		expect(shPid).toBe(pid);
		expect(pgid).toBe(pid);
	});

	it("takes its times from the injected clock", async () => {
		const real = systemClock();
		const clock = { ...real, now: () => 1_000_000 };
		const res = await runProcess(sh("true"), undefined, clock);
		expect(res.startedAt).toBe(1_000_000);
		expect(res.finishedAt).toBe(1_000_000);
	});

	it("terminates background children left in the group once the main process exits", async () => {
		const starts: number[] = [];
		const t0 = Date.now();
		const res = await runProcess(sh("sleep 100 & echo started", { killGraceMs: 2000 }), (_t, pid) => starts.push(pid));
		expect(res).toMatchObject({ status: "succeeded", exitCode: 0, output: "started\n" });
		expect(Date.now() - t0).toBeLessThan(2000 + 1500);
		expect(liveGroupMembers(starts[0])).toEqual([]);
	});

	it("does not wait forever for a process that left the group but holds the output open", async () => {
		const t0 = Date.now();
		// The main process waits until its child really is in its own session (pgid == pid) before it exits.
		const line = 'setsid sleep 30 & p=$!; while [ "$(cut -d\' \' -f5 /proc/$p/stat)" != "$p" ]; do sleep 0.01; done; echo $p';
		const res = await runProcess(sh(line, { killGraceMs: 300 }));
		const escaped = Number(res.output.trim());
		try {
			expect(res).toMatchObject({ status: "succeeded", exitCode: 0 });
			expect(Date.now() - t0).toBeLessThan(300 + 1000 + 1500);
			expect(escaped).toBeGreaterThan(0);
			expect(isAlive(escaped)).toBe(true); // out of reach of the group kill, as documented
			expect(res.finishedAt - res.startedAt).toBeGreaterThanOrEqual(300 + 1000 - 20);
		} finally {
			if (escaped > 0 && isAlive(escaped)) process.kill(escaped, "SIGKILL");
		}
	});
});

describe("runProcess: output bound", () => {
	const lines = Array.from({ length: 2000 }, (_, i) => `line ${i}\n`);
	const total = Buffer.byteLength(lines.join(""));
	const cases: Array<{ name: string; line: string; max: number; expected: string }> = [
		{
			name: "keeps the last N bytes and says how many were dropped",
			line: 'i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done',
			max: 1000,
			expected: `[...${total - 1000} bytes truncated...]\n${lines.join("").slice(total - 1000)}`,
		},
		{
			name: "no marker when the output fits exactly",
			line: "printf 0123456789",
			max: 10,
			expected: "0123456789",
		},
		{
			name: "one byte over",
			line: "printf 0123456789a",
			max: 10,
			expected: "[...1 bytes truncated...]\n123456789a",
		},
		{
			// "é" is 2 bytes: the last 5 of 8 bytes start mid-character; that byte is dropped too.
			name: "does not start mid UTF-8 character",
			line: "printf 'éééé'",
			max: 5,
			expected: "[...4 bytes truncated...]\néé",
		},
		{
			name: "large output through a tiny buffer",
			line: "head -c 1000000 /dev/zero | tr '\\0' x; printf END",
			max: 8,
			expected: `[...${1_000_003 - 8} bytes truncated...]\nxxxxxEND`,
		},
	];
	it.each(cases)("$name", async ({ line, max, expected }) => {
		const res = await runProcess(sh(line, { maxOutputBytes: max }));
		expect(res.status).toBe("succeeded");
		expect(res.output).toBe(expected);
	});

	it("TailBuffer matches a naive tail for random chunk sizes", () => {
		let seed = 42;
		const rand = (n: number) => {
			seed = (seed * 1103515245 + 12345) % 2147483648;
			return seed % n;
		};
		for (const limit of [1, 7, 64, 1000]) {
			const tb = new TailBuffer(limit);
			const all: number[] = [];
			for (let i = 0; i < 300; i++) {
				const chunk = Buffer.from(Array.from({ length: rand(limit * 2 + 3) }, () => 97 + rand(26)));
				tb.push(chunk);
				all.push(...chunk);
				expect(tb.bytes().equals(Buffer.from(all.slice(Math.max(0, all.length - limit))))).toBe(true);
			}
			expect(tb.totalBytes).toBe(all.length);
		}
	});
});

describe("runProcess: environment", () => {
	const LEAK = "EXECUTOR_TEST_SHOULD_NOT_LEAK";
	beforeAll(() => {
		process.env[LEAK] = "secret";
	});
	afterAll(() => {
		delete process.env[LEAK];
	});

	it("gives the child exactly spec.env plus PATH and the user's identity", async () => {
		const res = await runProcess({ file: "/usr/bin/env", args: [], env: { FOO: "bar baz", EMPTY: "" }, user: null, timeoutMs: 10_000, workRoot });
		expect(res.status).toBe("succeeded");
		const env = Object.fromEntries(
			res.output
				.trim()
				.split("\n")
				.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
		);
		const me = os.userInfo();
		expect(env).toEqual({ FOO: "bar baz", EMPTY: "", PATH: DEFAULT_PATH, HOME: me.homedir, USER: me.username, LOGNAME: me.username });
		expect(res.output).not.toContain(LEAK);
	});

	it("keeps a PATH given by the caller", async () => {
		const res = await runProcess(sh('printf "%s" "$PATH"', { env: { PATH: "/bin:/usr/bin" } }));
		expect(res.output).toBe("/bin:/usr/bin");
	});
});

describe("runProcess: user and working folder", () => {
	itRoot("runs as nobody, with no supplementary groups, in a private folder owned by nobody that is removed afterwards", async () => {
		const nobody = await resolveUser("nobody");
		const res = await runProcess(sh('id -u; id -g; id -G; stat -c "%U %a" .; pwd; echo "$HOME $USER $LOGNAME"; touch mine && echo wrote', { user: nobody }));
		expect(res.error).toBeNull();
		expect(res.status).toBe("succeeded");
		const [uid, gid, groups, owner, cwd, ident, wrote] = res.output.trim().split("\n");
		expect(uid).toBe("65534");
		expect(gid).toBe(String(nobody.gid));
		expect(groups).toBe(String(nobody.gid));
		expect(owner).toBe("nobody 700");
		expect(path.dirname(cwd)).toBe(fs.realpathSync(workRoot));
		expect(ident).toBe(`${nobody.home} nobody nobody`);
		expect(wrote).toBe("wrote");
		expect(fs.existsSync(cwd)).toBe(false);
	});

	it("runs as the worker's own user when user is null", async () => {
		const res = await runProcess(sh("id -u"));
		expect(res.output.trim()).toBe(String(process.getuid?.()));
	});

	it("removes the working folder when the job fails", async () => {
		const res = await runProcess(sh("pwd; mkdir -p a/b && echo x > a/b/c; chmod 000 a; exit 9"));
		expect(res.exitCode).toBe(9);
		expect(fs.existsSync(res.output.trim().split("\n")[0])).toBe(false);
	});

	it("makes the working folders' root when it is missing (first run, or removed meanwhile)", async () => {
		const root = path.join(workRoot, "gone", "runs");
		const first = await runProcess(sh("pwd", { workRoot: root }));
		expect(first).toMatchObject({ status: "succeeded" });
		expect(path.dirname(first.output.trim())).toBe(fs.realpathSync(root));
		fs.rmSync(path.join(workRoot, "gone"), { recursive: true });
		expect(await runProcess(sh("true", { workRoot: root }))).toMatchObject({ status: "succeeded" });
		expect(fs.readdirSync(root)).toEqual([]);
		fs.rmSync(path.join(workRoot, "gone"), { recursive: true });
	});

	it("fails cleanly when the working folder cannot be made", async () => {
		const file = path.join(workRoot, "not-a-dir");
		fs.writeFileSync(file, "");
		const res = await runProcess(sh("true", { workRoot: file }));
		expect(res).toMatchObject({ status: "failed", exitCode: null, output: "" });
		expect(res.error).toMatch(/working folder/);
		fs.rmSync(file);
	});
});

describe("runProcess: a stored executable is handed over as fd 3", () => {
	let store: string;

	beforeEach(() => {
		// mkdtemp: 0700, as the worker's cache folder.
		store = fs.mkdtempSync(path.join(os.tmpdir(), "executor-store-"));
	});

	afterEach(() => {
		fs.rmSync(store, { recursive: true, force: true });
	});

	function stored(content: string | Buffer, mode = 0o755): string {
		const file = path.join(store, `f${Math.random().toString(36).slice(2)}`);
		fs.writeFileSync(file, content);
		fs.chmodSync(file, mode);
		return file;
	}

	function spec(file: string, args: string[], storedFile: string, extra: Partial<ExecSpec> = {}): ExecSpec {
		return { file, args, stored: storedFile, env: {}, user: null, timeoutMs: 10_000, workRoot, ...extra };
	}

	/** The executor's own descriptors open on a file. */
	function fdsOn(file: string): number {
		const real = fs.realpathSync(file);
		return fs.readdirSync("/proc/self/fd").filter((fd) => {
			try {
				return fs.readlinkSync(`/proc/self/fd/${fd}`) === real;
			} catch {
				return false;
			}
		}).length;
	}

	/** Whether another process has the file open as its fd 3. */
	function heldAsFd3(file: string): boolean {
		const real = fs.realpathSync(file);
		return fs.readdirSync("/proc").some((e) => {
			if (!/^\d+$/.test(e) || Number(e) === process.pid) return false;
			try {
				return fs.readlinkSync(`/proc/${e}/fd/3`) === real;
			} catch {
				return false;
			}
		});
	}

	it("a script with a shebang is exec'd as /dev/fd/3, with its arguments", async () => {
		const file = stored('#!/bin/sh\necho "$0 $1"\n');
		const res = await runProcess(spec(STORED_FILE_PATH, ["x y"], file));
		expect(res).toMatchObject({ status: "succeeded", exitCode: 0, output: `${STORED_FILE_PATH} x y\n` });
	});

	it("a script without one is read by /bin/sh /dev/fd/3 (no execute bit needed)", async () => {
		const file = stored('echo "sh $0"', 0o644);
		const res = await runProcess(spec("/bin/sh", [STORED_FILE_PATH], file));
		expect(res).toMatchObject({ status: "succeeded", output: `sh ${STORED_FILE_PATH}\n` });
	});

	it("a binary is exec'd", async () => {
		const file = stored(fs.readFileSync("/usr/bin/id"));
		const res = await runProcess(spec(STORED_FILE_PATH, ["-u"], file));
		expect(res).toMatchObject({ status: "succeeded", output: `${process.getuid?.()}\n` });
	});

	itRoot("runs as nobody from a folder nobody cannot enter, and the job cannot open the file by its path", async () => {
		const nobody = await resolveUser("nobody");
		const file = path.join(store, "job");
		fs.writeFileSync(file, `#!/bin/sh\ncat ${file} >/dev/null 2>&1 && echo READ || echo DENIED; id -un\n`);
		fs.chmodSync(file, 0o755);
		expect(fs.statSync(store).mode & 0o777).toBe(0o700);
		const res = await runProcess(spec(STORED_FILE_PATH, [], file, { user: nobody }));
		expect(res).toMatchObject({ status: "succeeded", output: "DENIED\nnobody\n" });
	});

	it("prefire: held, then released; the executor keeps no descriptor of the file once spawned", async () => {
		const file = stored("#!/bin/sh\necho released\n");
		const releaseAt = Date.now() + 1000;
		const run = runProcess(spec(STORED_FILE_PATH, [], file, { releaseAt }));
		await waitFor(() => heldAsFd3(file), 1000, "the held process with the file as its fd 3");
		await waitFor(() => fdsOn(file) === 0, 200, "the executor's descriptor closed");
		expect(Date.now()).toBeLessThan(releaseAt);
		const res = await run;
		expect(res).toMatchObject({ status: "succeeded", output: "released\n", released: true });
		expect(fdsOn(file)).toBe(0);
	});

	it("a missing stored file fails before start, naming it", async () => {
		const missing = path.join(store, "gone");
		const started: number[] = [];
		const res = await runProcess(spec(STORED_FILE_PATH, [], missing), (_t, pid) => started.push(pid));
		expect(res).toMatchObject({ status: "failed", exitCode: null, output: "" });
		expect(res.error).toContain("ENOENT");
		expect(res.error).toContain(missing);
		expect(started).toEqual([]);
	});

	it("a stored file to exec without an execute bit fails with EACCES, and its descriptor is closed", async () => {
		const file = stored("#!/bin/sh\necho hi\n", 0o644);
		const res = await runProcess(spec(STORED_FILE_PATH, [], file));
		expect(res).toMatchObject({ status: "failed", exitCode: null, output: "" });
		expect(res.error).toContain("EACCES");
		expect(fdsOn(file)).toBe(0);
	});
});

describe("runProcess: start failures resolve as failed, never throw", () => {
	const cases: Array<{ name: string; setup: () => string; code: string }> = [
		{ name: "missing binary", setup: () => "/nonexistent/bin/job", code: "ENOENT" },
		{
			name: "file without execute permission",
			setup: () => {
				const dir = fs.mkdtempSync(path.join(os.tmpdir(), "executor-bin-"));
				const f = path.join(dir, "job");
				fs.writeFileSync(f, "#!/bin/sh\necho hi\n", { mode: 0o644 });
				return f;
			},
			code: "EACCES",
		},
	];
	it.each(cases)("$name", async ({ setup, code }) => {
		const file = setup();
		const started: number[] = [];
		const res = await runProcess({ file, args: [], env: {}, user: null, timeoutMs: 1000, workRoot }, (_t, pid) => started.push(pid));
		expect(res).toMatchObject({ status: "failed", exitCode: null, signal: null, output: "" });
		expect(res.error).toContain(code);
		expect(started).toEqual([]);
		if (file.startsWith(os.tmpdir())) fs.rmSync(path.dirname(file), { recursive: true, force: true });
	});

	it("an argument spawn refuses synchronously (NUL byte) is a failed run", async () => {
		const res = await runProcess(sh("echo \0"));
		expect(res).toMatchObject({ status: "failed", exitCode: null, output: "" });
		expect(res.error).toMatch(/cannot start/);
	});

	(isRoot ? it.skip : it)("switching users without root fails the run with EPERM", async () => {
		const res = await runProcess(sh("true", { user: { name: "root", uid: 0, gid: 0, home: "/root" } }));
		expect(res.status).toBe("failed");
		expect(res.error).toMatch(/EPERM|working folder/);
	});
});

describe("runProcess: timeout and cancellation", () => {
	it("timeout kills the whole group, grandchildren included", async () => {
		let pgid = 0;
		const grace = 3000;
		const t0 = Date.now();
		const res = await runProcess(sh("sleep 100 & echo $!; sleep 100", { timeoutMs: 1000, killGraceMs: grace }), (_t, pid) => {
			pgid = pid;
		});
		const elapsed = Date.now() - t0;
		expect(res).toMatchObject({ status: "timed_out", exitCode: null, signal: "SIGTERM", error: "timed out after 1000 ms" });
		expect(elapsed).toBeGreaterThanOrEqual(900);
		expect(elapsed).toBeLessThan(grace + 2000);
		expect(res.finishedAt - res.startedAt).toBeGreaterThanOrEqual(1000);
		const grandchild = Number(res.output.trim());
		expect(grandchild).toBeGreaterThan(0);
		expect(isAlive(grandchild)).toBe(false);
		expect(liveGroupMembers(pgid)).toEqual([]);
	});

	const termCases: Array<{ name: string; line: string; signal: string | null; exitCode: number | null; output: RegExp; minMs: number }> = [
		{
			// SIG_IGN is inherited across exec, so sleep ignores TERM too: only SIGKILL ends them.
			name: "ignores SIGTERM: SIGKILL after the grace period",
			line: "trap '' TERM; echo ready; sleep 100",
			signal: "SIGKILL",
			exitCode: null,
			output: /^ready\n$/,
			minMs: 500 + 700,
		},
		{
			name: "handles SIGTERM and exits on its own within the grace period",
			line: "trap 'echo bye; exit 7' TERM; echo ready; sleep 100 & wait",
			signal: null,
			exitCode: 7,
			output: /^ready\nbye\n$/,
			minMs: 500,
		},
	];
	it.each(termCases)("$name", async ({ line, signal, exitCode, output, minMs }) => {
		let pgid = 0;
		const res = await runProcess(sh(line, { timeoutMs: 500, killGraceMs: 700 }), (_t, pid) => {
			pgid = pid;
		});
		expect(res).toMatchObject({ status: "timed_out", signal, exitCode });
		expect(res.output).toMatch(output);
		expect(res.finishedAt - res.startedAt).toBeGreaterThanOrEqual(minMs - 20);
		expect(res.finishedAt - res.startedAt).toBeLessThan(500 + 700 + 1500);
		expect(liveGroupMembers(pgid)).toEqual([]);
	});

	it("abort signal cancels the run (SIGTERM to the group) and says why", async () => {
		const ac = new AbortController();
		let pgid = 0;
		const t0 = Date.now();
		const run = runProcess(sh("sleep 100 & sleep 100", { timeoutMs: null, signal: ac.signal }), (_t, pid) => {
			pgid = pid;
		});
		await waitFor(() => pgid > 0 && liveGroupMembers(pgid).length >= 2, 5000, "the job's processes");
		ac.abort(new Error("replaced by a newer run"));
		const res = await run;
		expect(res).toMatchObject({ status: "failed", exitCode: null, signal: "SIGTERM", error: "cancelled: replaced by a newer run" });
		expect(Date.now() - t0).toBeLessThan(5000);
		expect(liveGroupMembers(pgid)).toEqual([]);
	});

	it("an already aborted signal starts nothing", async () => {
		const ac = new AbortController();
		ac.abort();
		const started: number[] = [];
		const res = await runProcess(sh("echo should-not-run", { signal: ac.signal }), (_t, pid) => started.push(pid));
		expect(res).toMatchObject({ status: "failed", exitCode: null, output: "" });
		expect(res.error).toMatch(/cancelled/);
		expect(started).toEqual([]);
	});

	it("abort after the run finished changes nothing", async () => {
		const ac = new AbortController();
		const res = await runProcess(sh("echo ok", { signal: ac.signal }));
		ac.abort();
		expect(res).toMatchObject({ status: "succeeded", exitCode: 0, output: "ok\n" });
	});
});

/** Live processes whose command line contains `marker` (from /proc). */
function processesWith(marker: string): number[] {
	const out: number[] = [];
	for (const e of fs.readdirSync("/proc")) {
		if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
		try {
			if (fs.readFileSync(`/proc/${e}/cmdline`, "utf8").includes(marker) && isAlive(Number(e))) out.push(Number(e));
		} catch {
			/* gone */
		}
	}
	return out;
}

describe("runProcess: prefire (spawned ahead, held until releaseAt)", () => {
	it("the process exists before the instant and the job's code starts at it; startedAt is the release", async () => {
		const marker = `held-${process.pid}-${Date.now()}`;
		const releaseAt = Date.now() + 700;
		const run = runProcess(sh(`echo ${marker} >/dev/null; date +%s%3N`, { releaseAt }));
		await waitFor(() => processesWith(marker).length === 1, 600, "the held process");
		expect(Date.now()).toBeLessThan(releaseAt);
		const res = await run;
		expect(res).toMatchObject({ status: "succeeded", exitCode: 0, error: null, released: true });
		const ranAt = Number(res.output.trim());
		expect(ranAt).toBeGreaterThanOrEqual(releaseAt);
		expect(res.startedAt).toBeGreaterThanOrEqual(releaseAt);
		expect(res.startedAt - releaseAt).toBeLessThan(200);
		expect(ranAt).toBeGreaterThanOrEqual(res.startedAt);
		// Ready (spawned and held) ahead of the instant: what the prefire lead is judged by.
		expect(res.readyAt).toBeLessThan(releaseAt);
	});

	it("a command line keeps `sh -c` semantics: $0, no positional parameters, empty stdin, stderr merged, exit code", async () => {
		const line = 'echo "$0 $# [$_c]"; echo err >&2; cat; echo "pwd=$(pwd | cut -c1-1)"; exit 4';
		const held = await runProcess(sh(line, { releaseAt: Date.now() + 50 }));
		const plain = await runProcess(sh(line));
		expect(held).toMatchObject({ status: "failed", exitCode: 4, released: true });
		expect(held.output).toBe("/bin/sh 0 []\nerr\npwd=/\n");
		expect(held.output).toBe(plain.output);
		expect(plain.released).toBeUndefined();
		expect(plain.readyAt).toBeUndefined();
	});

	it("a file is exec'd with its arguments after the release", async () => {
		const file = path.join(os.tmpdir(), `prefire-script-${process.pid}.sh`);
		fs.writeFileSync(file, '#!/bin/sh\necho "script $# $1 $2"; echo oops >&2\n', { mode: 0o755 });
		try {
			const res = await runProcess({ ...sh(""), file, args: ["a b", "c"], releaseAt: Date.now() + 50 });
			expect(res).toMatchObject({ status: "succeeded", exitCode: 0, output: "script 2 a b c\noops\n", released: true });
		} finally {
			fs.rmSync(file, { force: true });
		}
	});

	it("the timeout counts from the release, not from the spawn", async () => {
		const releaseAt = Date.now() + 600;
		const res = await runProcess(sh("sleep 0.1; echo done", { releaseAt, timeoutMs: 400 }));
		expect(res).toMatchObject({ status: "succeeded", exitCode: 0, output: "done\n", released: true });
	});

	it("a release time already past releases at once", async () => {
		const res = await runProcess(sh("echo now", { releaseAt: Date.now() - 5000 }));
		expect(res).toMatchObject({ status: "succeeded", output: "now\n", released: true });
	});

	it("cancelled before the release: the job's code never runs, the held process is gone", async () => {
		const marker = `cancel-${process.pid}-${Date.now()}`;
		const flag = path.join(os.tmpdir(), `${marker}.ran`);
		const ac = new AbortController();
		const releaseAt = Date.now() + 800;
		const run = runProcess(sh(`touch ${flag}; echo ${marker}`, { releaseAt, signal: ac.signal }));
		await waitFor(() => processesWith(marker).length === 1, 700, "the held process");
		const [pid] = processesWith(marker);
		ac.abort(new Error("the job was deleted"));
		const res = await run;
		expect(res).toMatchObject({
			status: "failed",
			exitCode: null,
			signal: "SIGKILL",
			output: "",
			released: false,
			error: "cancelled: the job was deleted (before start)",
		});
		expect(Date.now()).toBeLessThan(releaseAt);
		await new Promise((r) => setTimeout(r, releaseAt - Date.now() + 100));
		expect(fs.existsSync(flag)).toBe(false);
		expect(isAlive(pid)).toBe(false);
	});

	it("cancelled after the release: as any cancellation (SIGTERM to the group)", async () => {
		const ac = new AbortController();
		let pgid = 0;
		const run = runProcess(sh("sleep 100", { releaseAt: Date.now() + 50, timeoutMs: null, signal: ac.signal }), (_t, pid) => {
			pgid = pid;
		});
		await waitFor(() => pgid > 0 && liveGroupMembers(pgid).some((p) => p !== pgid), 5000, "the job's sleep");
		ac.abort(new Error("replaced"));
		const res = await run;
		expect(res).toMatchObject({ status: "failed", signal: "SIGTERM", released: true, error: "cancelled: replaced" });
		expect(liveGroupMembers(pgid)).toEqual([]);
	});
});

describe("resolveUser", () => {
	it("resolves known users from the passwd database", async () => {
		await expect(resolveUser("nobody")).resolves.toEqual({ name: "nobody", uid: 65534, gid: expect.any(Number), home: expect.any(String) });
		await expect(resolveUser("root")).resolves.toMatchObject({ name: "root", uid: 0, gid: 0 });
	});

	it("rejects an unknown user", async () => {
		await expect(resolveUser("no_such_user_x9")).rejects.toThrow(/unknown user "no_such_user_x9"/);
	});

	const marker = path.join(os.tmpdir(), `executor-injection-${process.pid}`);
	const bad = ["root;rm -rf /", `x;touch ${marker}`, "$(touch " + marker + ")", "", "Root", "-root", "a b", "a".repeat(33), "nobody\n", "../etc"];
	it.each(bad)("rejects the name %j without running anything", async (name) => {
		await expect(resolveUser(name)).rejects.toThrow(/invalid user name/);
		expect(fs.existsSync(marker)).toBe(false);
	});
});

describe("effectiveRunUser", () => {
	const cases: Array<{ runAs: string | null; processIsRoot: boolean; expected: string | null | RegExp }> = [
		{ runAs: null, processIsRoot: true, expected: "nobody" },
		{ runAs: "alice", processIsRoot: true, expected: "alice" },
		{ runAs: "root", processIsRoot: true, expected: "root" },
		{ runAs: null, processIsRoot: false, expected: null },
		{ runAs: "worker", processIsRoot: false, expected: null },
		{ runAs: "alice", processIsRoot: false, expected: /cannot switch users/ },
	];
	it.each(cases)("runAs=$runAs root=$processIsRoot -> $expected", ({ runAs, processIsRoot, expected }) => {
		const call = () => effectiveRunUser({ runAs, processIsRoot, defaultUser: "nobody", currentUser: "worker" });
		if (expected instanceof RegExp) expect(call).toThrow(expected);
		else expect(call()).toBe(expected);
	});
});
