/**
 * The I/O edge that runs one job process.
 *
 * - The child is spawned with `detached: true`, so it calls setsid(): it leads a new session and a
 *   new process group whose id is its pid. Timeouts and cancellation signal the whole group with
 *   `process.kill(-pid, sig)`: SIGTERM first, SIGKILL after `killGraceMs`. Processes that call
 *   setsid()/setpgid() themselves leave the group and are out of reach (as with cron).
 * - The run ends when the main process has exited AND its output has reached EOF AND no live
 *   process is left in its group. Anything still running in the group after the main process
 *   exits (background children) gets SIGTERM right away and SIGKILL after the grace period.
 * - stdout and stderr share ONE pipe (the child starts as a tiny /bin/sh wrapper that points
 *   stderr at stdout and execs the job: no extra process), so the captured output keeps the order
 *   in which the job wrote it.
 *   Only the last `maxOutputBytes` are kept, in a fixed ring buffer.
 * - User switching uses spawn's uid/gid options. libuv calls setgroups(0, NULL) before
 *   setgid/setuid, so the child has NO supplementary groups (Node cannot call initgroups()).
 *   libuv changes directory before dropping privileges, so the working folder's parents need not
 *   be searchable by the target user.
 * - Environment: exactly `spec.env`, plus a default PATH when it has none, with HOME, USER and
 *   LOGNAME always set to the target user's (they override `spec.env`). Nothing is inherited from
 *   process.env.
 * - stdin is /dev/null. `runProcess` never throws: every failure is a "failed" result.
 * - Prefire (`spec.releaseAt`): the process is spawned ahead of its instant, held by its wrapper in
 *   `read` on a stdin pipe; at `releaseAt` one line on the pipe releases it, stdin becomes /dev/null
 *   and the job's own code starts. Forking, user switching and the working folder are paid before the
 *   instant; `startedAt` is the release and the timeout counts from it. A command line is evaluated by
 *   the held shell itself (`/bin/sh -c LINE` semantics, no second exec); a file is exec'd as usual.
 *   Cancelled before the release, the held wrapper is killed and the job's code never runs
 *   (`released: false`); if the pipe closes (its supervisor died), the wrapper exits without running it.
 * - A stored executable (`spec.stored`, a script or binary in the worker's private cache) is opened
 *   here, as the worker, and given to the child as fd 3; the child runs it as `/dev/fd/3`
 *   (STORED_FILE_PATH: exec'd, or read by /bin/sh or the shebang's interpreter). The kernel then
 *   checks only the file's own mode, not the folders above it, so the cache stays closed to jobs: a
 *   job can run its own executable and cannot reach another's. fd 3 stays open in the job.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { Readable } from "node:stream";
import { type Clock, type TimerHandle } from "../../core/clock";
import { failedBeforeStart, type ProcessResult } from "../../engine/worker/ports";
import { systemClock } from "../system/clock";
import { RunSetupError } from "../../core/errors";

export interface ResolvedUser {
	name: string;
	uid: number;
	gid: number;
	home: string;
}

export interface ExecSpec {
	/** argv[0]: "/bin/sh" for a command job (args ["-c", line]), the stored file's absolute path for a script or binary. */
	file: string;
	args: string[];
	/** The child's whole environment (see the module comment for what is added). */
	env: Record<string, string>;
	/** null = run as the worker's own user. */
	user: ResolvedUser | null;
	/** null = no time limit. */
	timeoutMs: number | null;
	/** SIGTERM to the group, then SIGKILL after this many ms. Default 5000. */
	killGraceMs?: number;
	/** Keep only the last N bytes of the combined output. Default 64 KiB. */
	maxOutputBytes?: number;
	/** A fresh private working folder is made under it per run and removed afterwards. */
	workRoot: string;
	/** Abort = cancel the run: same SIGTERM-then-SIGKILL to the group; the result is "failed". */
	signal?: AbortSignal;
	/** Prefire: spawn now, release the job's code at this instant (the executor's clock). */
	releaseAt?: number | null;
	/**
	 * A stored executable's path (in the worker's private cache): opened by the executor and given to
	 * the child as fd 3, which `file` or `args` name as STORED_FILE_PATH. Unset for command jobs.
	 */
	stored?: string;
}

/** How a job's process names its stored executable (spec.stored): the open file on its fd 3. */
export const STORED_FILE_PATH = "/dev/fd/3";

export type ExecStatus = ProcessResult["status"];

/** What runProcess answers: the worker engine's ProcessResult. */
export type ExecResult = ProcessResult;

export const DEFAULT_KILL_GRACE_MS = 5000;
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024;
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
export const USER_NAME_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;

/** How often to look for live processes left in the group while waiting for them to die. */
const GROUP_POLL_MS = 50;
/** After the main process exits: how long past the grace period to wait for output EOF. */
const DRAIN_EXTRA_MS = 1000;

/* ------------------------------------------------------------------------------------------ */
/* Users                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** Looks a user up with `getent passwd NAME` (no shell). Rejects invalid names before running anything. */
export function resolveUser(name: string): Promise<ResolvedUser> {
	if (typeof name !== "string" || !USER_NAME_PATTERN.test(name)) {
		return Promise.reject(new RunSetupError(`invalid user name ${JSON.stringify(name)}: must match ${USER_NAME_PATTERN}`));
	}
	return new Promise((resolve, reject) => {
		execFile("getent", ["passwd", name], { timeout: 10_000, encoding: "utf8" }, (err, stdout) => {
			if (err) {
				// getent exits 2 when the key is not in the database.
				if ((err as { code?: unknown }).code === 2) reject(new RunSetupError(`unknown user "${name}"`));
				else reject(new RunSetupError(`cannot look up user "${name}": ${err.message}`));
				return;
			}
			const line = stdout.split("\n").find((l) => l.startsWith(`${name}:`));
			const f = line?.split(":");
			const uid = Number(f?.[2]);
			const gid = Number(f?.[3]);
			if (!f || f.length < 7 || !Number.isInteger(uid) || !Number.isInteger(gid) || f[2] === "" || f[3] === "") {
				reject(new RunSetupError(`unknown user "${name}": unexpected getent output`));
				return;
			}
			resolve({ name: f[0], uid, gid, home: f[5] || "/" });
		});
	});
}

/**
 * Which user a job runs as. Root workers run jobs as `runAs`, or `defaultUser` when the job has
 * none. Other workers run jobs as themselves (null) and cannot honour a different `runAs`: that
 * throws, and the run fails with the message.
 */
export function effectiveRunUser(opts: {
	runAs: string | null;
	processIsRoot: boolean;
	defaultUser: string;
	/** The worker's own user name; a non-root worker may only run jobs as itself. */
	currentUser: string;
}): string | null {
	if (opts.processIsRoot) return opts.runAs ?? opts.defaultUser;
	if (opts.runAs === null || opts.runAs === opts.currentUser) return null;
	throw new RunSetupError(`the job must run as "${opts.runAs}" but this worker runs as "${opts.currentUser}" without root privileges and cannot switch users`);
}

/* ------------------------------------------------------------------------------------------ */
/* Output                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/** Keeps the last `limit` bytes written to it, in at most `limit` bytes of memory. */
export class TailBuffer {
	private buf: Buffer = Buffer.alloc(0);
	/** Index of the oldest byte once the ring has wrapped; the next write goes there. */
	private head = 0;
	private len = 0;
	private seen = 0;

	constructor(private readonly limit: number) {}

	get totalBytes(): number {
		return this.seen;
	}

	push(chunk: Buffer): void {
		this.seen += chunk.length;
		if (this.limit <= 0 || chunk.length === 0) return;
		if (chunk.length >= this.limit) {
			this.ensureCapacity(this.limit);
			chunk.copy(this.buf, 0, chunk.length - this.limit);
			this.head = 0;
			this.len = this.limit;
			return;
		}
		if (this.len < this.limit) this.ensureCapacity(Math.min(this.limit, this.len + chunk.length));
		if (this.len + chunk.length <= this.limit && this.head === 0) {
			// Not wrapped yet: append linearly.
			chunk.copy(this.buf, this.len);
			this.len += chunk.length;
			return;
		}
		// Full ring (capacity == limit): overwrite from the oldest byte on.
		let pos = (this.head + this.len) % this.limit;
		let src = 0;
		while (src < chunk.length) {
			const n = Math.min(chunk.length - src, this.limit - pos);
			chunk.copy(this.buf, pos, src, src + n);
			src += n;
			pos = (pos + n) % this.limit;
		}
		const newLen = Math.min(this.limit, this.len + chunk.length);
		this.head = (this.head + this.len + chunk.length - newLen) % this.limit;
		this.len = newLen;
	}

	/** The kept bytes, oldest first. */
	bytes(): Buffer {
		if (this.head === 0) return Buffer.from(this.buf.subarray(0, this.len));
		// Wrapped only when full: oldest part from head to the end, then the start up to head.
		return Buffer.concat([this.buf.subarray(this.head, this.limit), this.buf.subarray(0, this.head)]);
	}

	/** UTF-8 text; when bytes were dropped, a leading "[...N bytes truncated...]\n" line says how many. */
	text(): string {
		let kept = this.bytes();
		let dropped = this.seen - kept.length;
		if (dropped > 0) {
			// Do not start in the middle of a UTF-8 sequence: skip up to 3 continuation bytes.
			let i = 0;
			while (i < 3 && i < kept.length && (kept[i] & 0xc0) === 0x80) i++;
			kept = kept.subarray(i);
			dropped += i;
			return `[...${dropped} bytes truncated...]\n${kept.toString("utf8")}`;
		}
		return kept.toString("utf8");
	}

	private ensureCapacity(n: number): void {
		if (this.buf.length >= n) return;
		// Only grows while not wrapped (head === 0), so a linear copy keeps the order.
		const next = Buffer.allocUnsafe(Math.min(this.limit, Math.max(n, this.buf.length * 2, 4096)));
		this.buf.copy(next, 0, 0, this.len);
		this.buf = next;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Running                                                                                     */
/* ------------------------------------------------------------------------------------------ */

const START_ERRORS: Record<string, string> = {
	ENOENT: "no such file or directory",
	EACCES: "permission denied",
	EPERM: "operation not permitted (switching user needs root)",
	ENOEXEC: "not an executable format",
	E2BIG: "argument list or environment too long",
};

function describeStartError(file: string, err: unknown): string {
	const code = (err as NodeJS.ErrnoException | null)?.code;
	const message = err instanceof Error ? err.message : String(err);
	if (code && START_ERRORS[code]) return `cannot start ${JSON.stringify(file)}: ${code} (${START_ERRORS[code]})`;
	return `cannot start ${JSON.stringify(file)}: ${code ? `${code}: ` : ""}${message}`;
}

function errorText(err: unknown): string {
	return err instanceof Error ? err.message : String(err);
}

function abortReasonText(signal: AbortSignal): string {
	const r: unknown = signal.reason;
	if (r === undefined) return "cancelled";
	const text = errorText(r);
	return text ? `cancelled: ${text}` : "cancelled";
}

function identityOf(user: ResolvedUser | null): { name: string; home: string } | null {
	if (user) return { name: user.name, home: user.home };
	try {
		const me = os.userInfo();
		return { name: me.username, home: me.homedir };
	} catch {
		return null; // no passwd entry for our uid
	}
}

function buildEnv(spec: ExecSpec): Record<string, string> {
	const env: Record<string, string> = {};
	for (const [k, v] of Object.entries(spec.env)) env[k] = String(v);
	if (!env.PATH) env.PATH = DEFAULT_PATH;
	const id = identityOf(spec.user);
	if (id) {
		env.HOME = id.home;
		env.USER = id.name;
		env.LOGNAME = id.name;
	}
	return env;
}

interface Prepared {
	dir: string;
	/** spec.stored, open (fd 3 of the child); closed by the executor once the child is spawned. */
	stored: fsp.FileHandle | null;
}

/**
 * The private working folder (0700, owned by the target user). The root is made when it is missing
 * (the first run, or someone removed it), not looked for before every run.
 */
async function prepare(spec: ExecSpec, created: { dir: string | null }): Promise<Prepared> {
	const prefix = path.join(spec.workRoot, "run-");
	let dir: string;
	try {
		dir = await fsp.mkdtemp(prefix);
	} catch (e) {
		if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
		// Enter only, as the worker makes it (lib/core/data-layout.ts).
		await fsp.mkdir(spec.workRoot, { recursive: true, mode: 0o711 });
		dir = await fsp.mkdtemp(prefix);
	}
	created.dir = dir;
	// mkdtemp makes it 0700.
	if (spec.user) await fsp.chown(dir, spec.user.uid, spec.user.gid);
	return { dir, stored: null };
}

/**
 * stdout and stderr share one pipe: the child starts as `/bin/sh -c 'exec 2>&1; exec "$0" "$@"'
 * FILE ARGS...`, which points its stderr at its stdout and then replaces itself with FILE (an exec,
 * not a fork: the job keeps the pid, the process group and the argv it asked for).
 */
const MERGE_STREAMS = 'unset PWD; exec 2>&1; exec "$0" "$@"';
/** Prefire wrappers: wait for the release line, then as MERGE_STREAMS; EOF first = never run (125). */
const HOLD = "read -r _h || exit 125; unset _h; exec </dev/null; ";
const HOLD_EXEC = HOLD + MERGE_STREAMS;
/**
 * A command line: the wrapper shell evaluates it itself ($0 /bin/sh, no positional parameters, as
 * `sh -c`), held or not: one exec of the shell fewer than wrapping `sh -c`, a third of the cost of
 * starting a short command.
 */
const EVAL = 'unset PWD; exec 2>&1; _c=$1; shift; eval "unset _c; $_c"';

/** A command job's spec: `/bin/sh -c LINE`, which the wrapper shell evaluates itself. */
function isCommandLine(spec: ExecSpec): boolean {
	return spec.file === "/bin/sh" && spec.args.length === 2 && spec.args[0] === "-c";
}

/** The argv of the wrapper for this spec. */
function wrapperArgs(spec: ExecSpec, held: boolean): string[] {
	if (isCommandLine(spec)) return ["-c", held ? HOLD + EVAL : EVAL, "/bin/sh", spec.args[1]];
	return ["-c", held ? HOLD_EXEC : MERGE_STREAMS, spec.file, ...spec.args];
}

function notExecutable(file: string): Error {
	return Object.assign(new Error(`spawn ${file} EACCES`), { code: "EACCES" });
}

/** A missing or non-executable file fails like spawn would (ENOENT, EACCES), before the wrapper runs: the error, or null. */
async function checkExecutable(file: string): Promise<unknown> {
	try {
		const st = await fsp.stat(file);
		if (!st.isFile() || (st.mode & 0o111) === 0) return notExecutable(file);
		return null;
	} catch (e) {
		return e;
	}
}

/**
 * spec.stored opened for the child (one open and one fstat: what checkExecutable costs a path, plus
 * the close), checked as checkExecutable checks a path (exec'd: it must be executable), or the error.
 */
async function openStored(stored: string, execd: boolean): Promise<{ handle: fsp.FileHandle } | { error: unknown }> {
	let handle: fsp.FileHandle;
	try {
		handle = await fsp.open(stored, "r");
	} catch (e) {
		return { error: e };
	}
	try {
		const st = await handle.stat();
		if (st.isFile() && (!execd || (st.mode & 0o111) !== 0)) return { handle };
		await handle.close();
		return { error: notExecutable(stored) };
	} catch (e) {
		await handle.close().catch(() => undefined);
		return { error: e };
	}
}

/**
 * Remove a run's working folder. Most jobs leave it empty: one rmdir, and the recursive walk only
 * for a folder with something in it. Never throws.
 */
async function removeFolder(dir: string): Promise<void> {
	try {
		await fsp.rmdir(dir);
	} catch {
		await fsp.rm(dir, { recursive: true, force: true, maxRetries: 2 }).catch(() => undefined);
	}
}

/** True while the process group has a member that is not a zombie. */
async function groupHasLiveMembers(pgid: number): Promise<boolean> {
	try {
		process.kill(-pgid, 0);
	} catch (e) {
		return (e as NodeJS.ErrnoException).code === "EPERM";
	}
	// kill(2) also succeeds for a group of zombies (orphans whose reaper does not reap); look closer.
	let entries: string[];
	try {
		entries = await fsp.readdir("/proc");
	} catch {
		return true;
	}
	const states = await Promise.all(
		entries
			.filter((e) => /^\d+$/.test(e))
			.map(async (e) => {
				try {
					const stat = await fsp.readFile(`/proc/${e}/stat`, "utf8");
					const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // state ppid pgrp ...
					return Number(f[2]) === pgid && f[0] !== "Z" && f[0] !== "X";
				} catch {
					return false;
				}
			}),
	);
	return states.some(Boolean);
}

/**
 * Runs one process to completion. Never throws or rejects: start failures, timeouts and
 * cancellation come back as results. `onStart` is called once with the start time and pid
 * (which is also the process group id) when the process has started; not at all if it never did.
 */
export async function runProcess(spec: ExecSpec, onStart?: (startedAt: number, pid: number) => void, clock: Clock = systemClock()): Promise<ExecResult> {
	const notStarted = (error: string): ExecResult => failedBeforeStart(clock.now(), error, spec.releaseAt != null ? false : undefined);
	if (spec.signal?.aborted) return notStarted(`${abortReasonText(spec.signal)} (before start)`);

	const created: { dir: string | null } = { dir: null };
	let prepared: Prepared | null = null;
	try {
		try {
			prepared = await prepare(spec, created);
		} catch (e) {
			return notStarted(`cannot prepare the working folder under ${JSON.stringify(spec.workRoot)}: ${errorText(e)}`);
		}
		if (spec.signal?.aborted) return notStarted(`${abortReasonText(spec.signal)} (before start)`);
		if (spec.stored !== undefined) {
			const opened = await openStored(spec.stored, spec.file === STORED_FILE_PATH);
			if ("error" in opened) return notStarted(describeStartError(spec.stored, opened.error));
			prepared.stored = opened.handle;
		} else {
			// A command line runs in the wrapper shell itself: spawning /bin/sh tells its own failure.
			const notExecutable = isCommandLine(spec) ? null : await checkExecutable(spec.file);
			if (notExecutable) return notStarted(describeStartError(spec.file, notExecutable));
		}
		return await supervise(spec, prepared, onStart, clock);
	} catch (e) {
		return notStarted(`executor error: ${errorText(e)}`);
	} finally {
		await closeStored(prepared);
		if (created.dir) await removeFolder(created.dir);
	}
}

/** Close the stored executable's handle (the child has its own fd 3 once spawned). Never throws. */
async function closeStored(prepared: Prepared | null): Promise<void> {
	if (!prepared?.stored) return;
	const handle = prepared.stored;
	prepared.stored = null;
	await handle.close().catch(() => undefined);
}

function supervise(spec: ExecSpec, prepared: Prepared, onStart: ((startedAt: number, pid: number) => void) | undefined, clock: Clock): Promise<ExecResult> {
	const grace = Math.max(0, spec.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
	const tail = new TailBuffer(Math.max(0, spec.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES));
	const attemptAt = clock.now();

	return new Promise<ExecResult>((resolve) => {
		let finished = false;
		let startedAt: number | null = null;
		/** A held process: when it was spawned and waiting for its release. */
		let readyAt: number | null = null;
		let exited = false;
		let exitCode: number | null = null;
		let exitSignal: string | null = null;
		let startError: string | null = null;
		let termination: { status: ExecStatus; error: string } | null = null;
		let outputClosed = false;
		let polling = false;
		let timeoutTimer: TimerHandle | null = null;
		let killTimer: TimerHandle | null = null;
		let drainTimer: TimerHandle | null = null;
		let pollTimer: TimerHandle | null = null;
		let releaseTimer: TimerHandle | null = null;
		const held = spec.releaseAt !== undefined && spec.releaseAt !== null;

		let reader: Readable | null = null;

		const clear = (t: TimerHandle | null): null => {
			if (t) clock.clearTimeout(t);
			return null;
		};

		let child: ChildProcess | null = null;
		const signalGroup = (sig: NodeJS.Signals): void => {
			const pid = child?.pid;
			if (!pid) return;
			try {
				process.kill(-pid, sig);
			} catch (e) {
				if ((e as NodeJS.ErrnoException).code !== "ESRCH") child?.kill(sig);
			}
		};
		/** SIGTERM now, SIGKILL after the grace period (once). */
		const termAndKill = (): void => {
			signalGroup("SIGTERM");
			if (killTimer) return;
			killTimer = clock.setTimeout(() => {
				killTimer = null;
				signalGroup("SIGKILL");
				maybeFinish();
			}, grace);
		};
		const terminate = (status: ExecStatus, error: string): void => {
			if (finished || exited || termination) return;
			termination = { status, error };
			timeoutTimer = clear(timeoutTimer);
			termAndKill();
		};
		const onAbort = (): void => {
			if (held && startedAt === null && !exited && !termination) {
				// Still held: the job's code never ran; nothing to be graceful about.
				termination = { status: "failed", error: `${abortReasonText(spec.signal as AbortSignal)} (before start)` };
				releaseTimer = clear(releaseTimer);
				signalGroup("SIGKILL");
				return;
			}
			terminate("failed", abortReasonText(spec.signal as AbortSignal));
		};

		const finish = (): void => {
			if (finished) return;
			finished = true;
			timeoutTimer = clear(timeoutTimer);
			killTimer = clear(killTimer);
			drainTimer = clear(drainTimer);
			pollTimer = clear(pollTimer);
			releaseTimer = clear(releaseTimer);
			spec.signal?.removeEventListener("abort", onAbort);
			reader?.destroy();
			const finishedAt = clock.now();
			let status: ExecStatus;
			let error: string | null = null;
			if (startError !== null) {
				status = "failed";
				error = startError;
			} else if (held && startedAt === null && !termination) {
				status = "failed";
				error = `the held process ended before its release (${exitSignal ?? `exit ${exitCode}`})`;
			} else if (termination) {
				status = termination.status;
				error = termination.error;
			} else {
				status = exitCode === 0 ? "succeeded" : "failed";
			}
			resolve({
				status,
				exitCode,
				signal: exitSignal,
				output: tail.text(),
				startedAt: startedAt ?? attemptAt,
				finishedAt,
				error,
				...(held ? { released: startedAt !== null, ...(readyAt !== null ? { readyAt } : {}) } : {}),
			});
		};

		function maybeFinish(): void {
			if (finished || !exited || !outputClosed) return;
			if (!killTimer || !child?.pid) return finish();
			// Processes were signalled and the grace period is running: done as soon as none is left.
			if (polling || pollTimer) return;
			polling = true;
			const pid = child.pid;
			groupHasLiveMembers(pid).then(
				(alive) => {
					polling = false;
					if (finished) return;
					if (!alive) return finish();
					pollTimer = clock.setTimeout(() => {
						pollTimer = null;
						maybeFinish();
					}, GROUP_POLL_MS);
				},
				() => {
					polling = false;
				},
			);
		}

		const env = buildEnv(spec);
		try {
			const stdin = held ? "pipe" : "ignore";
			child = spawn("/bin/sh", wrapperArgs(spec, held), {
				cwd: prepared.dir,
				env,
				// fd 3: the stored executable (STORED_FILE_PATH), when there is one.
				stdio: prepared.stored ? [stdin, "pipe", "ignore", prepared.stored.fd] : [stdin, "pipe", "ignore"],
				detached: true,
				...(spec.user ? { uid: spec.user.uid, gid: spec.user.gid } : {}),
			});
		} catch (e) {
			// EPERM (uid switch), invalid arguments... are thrown synchronously.
			startError = describeStartError(spec.file, e);
			exited = true;
			outputClosed = true;
			finish();
			return;
		}
		// The fork has copied the fd table: the child keeps its fd 3, the executor need not.
		void closeStored(prepared);
		const out = child.stdout as Readable;
		reader = out;
		out.on("data", (chunk: Buffer) => tail.push(chunk));
		out.on("error", () => out.destroy());
		out.on("close", () => {
			outputClosed = true;
			maybeFinish();
		});

		child.stdin?.on("error", () => undefined); // EPIPE: the held process is gone; 'exit' tells the rest

		const started = (): void => {
			startedAt = clock.now();
			if (spec.timeoutMs !== null && spec.timeoutMs !== undefined && !termination) {
				const ms = spec.timeoutMs;
				timeoutTimer = clock.setTimeout(() => {
					timeoutTimer = null;
					terminate("timed_out", `timed out after ${ms} ms`);
				}, ms);
			}
			try {
				onStart?.(startedAt, child?.pid as number);
			} catch {
				/* a faulty callback must not break the run */
			}
		};
		/** Prefire: one line on the pipe lets the held wrapper go on to the job's code. */
		const release = (): void => {
			releaseTimer = null;
			if (finished || exited || termination || startedAt !== null) return;
			child?.stdin?.end("go\n");
			started();
		};

		spec.signal?.addEventListener("abort", onAbort, { once: true });

		child.on("spawn", () => {
			if (!held) return started();
			if (termination) return signalGroup("SIGKILL"); // aborted while spawning
			readyAt = clock.now();
			releaseTimer = clock.setTimeout(release, (spec.releaseAt as number) - readyAt);
		});
		child.on("error", (err) => {
			if (startedAt !== null || exited) return; // only start failures matter (ENOENT, EACCES, ...)
			startError = describeStartError(spec.file, err);
			exited = true;
			outputClosed = true;
			reader?.destroy();
			maybeFinish();
		});
		child.on("exit", (code, sig) => {
			if (exited) return;
			exited = true;
			exitCode = code;
			exitSignal = sig;
			timeoutTimer = clear(timeoutTimer);
			releaseTimer = clear(releaseTimer);
			const pid = child?.pid;
			if (pid) {
				// Leftovers in the group (background children) are terminated with the run.
				if (!killTimer) {
					let any = true;
					try {
						process.kill(-pid, 0);
					} catch {
						any = false;
					}
					if (any) termAndKill();
				}
				// Whatever holds the output open (e.g. a process that left the group) must not hold the run.
				drainTimer = clock.setTimeout(() => {
					drainTimer = null;
					if (killTimer) {
						killTimer = clear(killTimer);
						signalGroup("SIGKILL");
					}
					reader?.destroy();
				}, grace + DRAIN_EXTRA_MS);
			}
			maybeFinish();
		});
	});
}
