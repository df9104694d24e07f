/**
 * The worker engine's ProcessRunner (lib/engine/worker/ports.ts) on real processes: a run's process
 * is prepared from its job (the account it runs as, its environment, its executable fetched into the
 * verified cache; a script without a shebang runs through /bin/sh) and spawned from the runner pool,
 * or from this process when there is none.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import type { Clock } from "../../core/clock";
import { RunSetupError } from "../../core/errors";
import type { Run } from "../../core/types";
import type { WorkerJob } from "../../core/views";
import type { PreparedProcess, ProcessRunner } from "../../engine/worker/ports";
import type { ArtifactCache } from "../local/artifact-cache";
import { WORK_ROOT_MODE } from "../../core/data-layout";
import { ensureDirMode } from "../local/data-dir";
import { DEFAULT_PATH, effectiveRunUser, resolveUser, runProcess, STORED_FILE_PATH, type ExecSpec, type ResolvedUser } from "./executor";
import { RunnerPool } from "./runner-pool";
import type { SecretBox } from "../secrets/secret-box";

export interface JobRunnerOptions {
	clock: Clock;
	artifacts: ArtifactCache;
	/** Each run gets a private working folder under it. */
	workRoot: string;
	/** The account of jobs without runAs when the worker runs as root. */
	defaultRunUser: string;
	maxOutputBytes: number;
	/** Helper processes that spawn the jobs (0: spawn from this process). */
	runners: number;
	/** Handed on to the runner pool on its own (not called as a method). */
	log: (msg: string) => void;
	/** Opens the job's secretEnv values (sealed at rest and on the wire: opened here, for the run only). */
	secrets: SecretBox;
}

export class JobProcessRunner implements ProcessRunner {
	private readonly users = new Map<string, ResolvedUser>();
	private readonly pool: RunnerPool | null;
	private readonly processIsRoot = typeof process.getuid === "function" && process.getuid() === 0;
	private readonly currentUser = os.userInfo().username;

	constructor(private readonly opts: JobRunnerOptions) {
		// Enter only (0711, also on a root an older version made 0755): see lib/core/data-layout.ts.
		ensureDirMode(opts.workRoot, WORK_ROOT_MODE);
		this.pool = opts.runners > 0 ? new RunnerPool(opts.runners, undefined, opts.log, opts.clock) : null;
	}

	async prepare(job: WorkerJob, run: Run, attempt: number, ctl: { signal: AbortSignal; releaseAt: number | null }): Promise<PreparedProcess> {
		const { opts } = this;
		const userName = effectiveRunUser({ runAs: job.runAs, processIsRoot: this.processIsRoot, defaultUser: opts.defaultRunUser, currentUser: this.currentUser });
		let user: ResolvedUser | null = null;
		if (userName !== null) {
			user = this.users.get(userName) ?? (await resolveUser(userName));
			this.users.set(userName, user);
		}
		const secret: Record<string, string> = {};
		// A value that does not open fails the run with the reason (RunSetupError), naming no value.
		for (const [k, sealed] of Object.entries(job.secretEnv)) secret[k] = opts.secrets.open(sealed);
		const env: Record<string, string> = {
			PATH: DEFAULT_PATH,
			...job.env,
			...secret,
			CRONJOB_JOB_ID: job.id,
			CRONJOB_RUN_ID: run.id,
			CRONJOB_SCHEDULED_AT: run.scheduledAt,
			CRONJOB_ATTEMPT: String(attempt),
		};
		const base = {
			env,
			user,
			timeoutMs: job.timeout ? job.timeout * 1000 : null,
			maxOutputBytes: opts.maxOutputBytes,
			workRoot: opts.workRoot,
			signal: ctl.signal,
			releaseAt: ctl.releaseAt,
		};
		if (job.type === "command") return this.prepared({ ...base, file: "/bin/sh", args: ["-c", job.executable] }, () => undefined);
		if (!job.digest) throw new RunSetupError(`job ${job.id} has no stored executable`);
		const lease = await opts.artifacts.acquire(job.digest, job.size ?? undefined);
		try {
			// The cache is private to the worker: the process gets its file open, as /dev/fd/3.
			let file = STORED_FILE_PATH;
			let args: string[] = [];
			if (job.type === "script" && !(await hasShebang(lease.path))) {
				file = "/bin/sh";
				args = [STORED_FILE_PATH];
			}
			return this.prepared({ ...base, file, args, stored: lease.path }, () => lease.release());
		} catch (err) {
			lease.release();
			throw err;
		}
	}

	close(): Promise<void> {
		return this.pool?.close() ?? Promise.resolve();
	}

	private prepared(spec: ExecSpec, release: () => void): PreparedProcess {
		let disposed = false;
		return {
			start: () => (this.pool ? this.pool.run(spec) : runProcess(spec, undefined, this.opts.clock)),
			dispose: () => {
				if (disposed) return;
				disposed = true;
				release();
			},
		};
	}
}

async function hasShebang(file: string): Promise<boolean> {
	const head = Buffer.alloc(2);
	const fd = await fs.promises.open(file, "r");
	try {
		await fd.read(head, 0, 2, 0);
	} finally {
		await fd.close();
	}
	return head.toString("latin1") === "#!";
}
