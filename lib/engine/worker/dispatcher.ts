/**
 * The dispatcher takes one fire from claim to result (the stages are in fire.ts):
 *
 *   admission (backlog.ts: room, or wait as the misfire policy allows) -> overlap policy -> claim
 *   (job, scheduledAt) -> record the start (unique key) -> process (prefired and held until the
 *   instant, or started now) -> record the result -> retry with backoff
 *
 * Prefire: a recurring `allow` job's scheduled first attempt, handed over ahead of its instant
 * while a process slot is free, is claimed, recorded and spawned ahead and held until the instant
 * (lib/core/policies.ts prefireDecision). A reload of the job while the fire is held keeps it,
 * rebuilds it from the new definition (same claim, same run) or cancels it (recorded skipped; the
 * job's code never ran): reviewHeld.
 */
import type { Clock } from "../../core/clock";
import type { Claim, Coordination } from "../../core/coordination";
import { isRetryable } from "../../core/errors";
import { heldFireAfterReload, overlapDecision, prefireDecision, retryDelayMs, shouldRetry } from "../../core/policies";
import type { Run, RunTrigger } from "../../core/types";
import type { WorkerJob } from "../../core/views";
import type { Limiter } from "../limiter";
import type { Backlog, Ticket } from "./backlog";
import { Fire, HeldJobChanged, type FireObserver } from "./fire";
import { failedBeforeStart, type Logger, type ProcessResult, type ProcessRunner, type WorkerMetrics } from "./ports";
import type { PrefireLead } from "./prefire-lead";
import type { RunRecorder } from "./recorder";
import type { Recovery } from "./recovery";
import type { FireStages, StageTimes } from "./stages";
import { schedulable, type WorkerState } from "./state";

export interface DispatcherDeps {
	state: WorkerState;
	clock: Clock;
	coordination: Coordination;
	recorder: RunRecorder;
	recovery: () => Recovery;
	runner: ProcessRunner;
	/** Bounds the processes running at once. */
	slots: Limiter;
	/** Bounds the fires in flight; what finds no room waits there, by the misfire policy. */
	backlog: Backlog;
	stages: FireStages;
	metrics: WorkerMetrics;
	logger: Logger;
	nodeId: string;
	/** The prefire lead in use; told how each prefired fire went. */
	lead: PrefireLead;
	/** A fire whose claim failed on a dropped connection goes back to the crontab, tried again after `retryMs` (fire-loop.ts). */
	giveBack(job: WorkerJob, at: number, retryMs?: number): void;
	/** Sees every change of stage (tests, debugging). */
	observe?: FireObserver;
}

/**
 * The process slots held by prefired fires whose instant has not come (parked), counted by release
 * instant: a slot stops counting at its instant, or when it is given back before (a fire dropped or
 * cancelled). Prefired fires of one instant share an entry, so the count is over a few entries.
 */
class Parked {
	private readonly byInstant = new Map<number, number>();

	count(now: number): number {
		let n = 0;
		for (const [at, k] of this.byInstant) {
			if (at <= now) this.byInstant.delete(at);
			else n += k;
		}
		return n;
	}

	/** The slot of a fire prefired for `at`, counted as parked until then; null without a slot. */
	slot(release: (() => void) | null, at: number): (() => void) | null {
		if (!release) return null;
		this.byInstant.set(at, (this.byInstant.get(at) ?? 0) + 1);
		let given = false;
		return () => {
			if (given) return;
			given = true;
			const k = this.byInstant.get(at);
			// Gone from the map once its instant passed (count prunes it).
			if (k !== undefined) {
				if (k > 1) this.byInstant.set(at, k - 1);
				else this.byInstant.delete(at);
			}
			release();
		};
	}
}

/** A fire blocked by a stale claim of our own is tried again after this (the claim goes with its session). */
export const STALE_CLAIM_RETRY_MS = 500;

export class Dispatcher {
	private readonly parked = new Parked();

	constructor(private readonly deps: DispatcherDeps) {}

	/**
	 * Take a fire. Resolves the run once its start is recorded (the process goes on), or null when it
	 * does not run here. Rejects only for a manual run whose start cannot be recorded (the caller's 503).
	 */
	async fire(job: WorkerJob, scheduledAt: number, trigger: RunTrigger, attempt: number): Promise<Run | null> {
		const { state, clock, slots, backlog } = this.deps;
		const fire = new Fire(job, scheduledAt, trigger, attempt, this.deps.observe ?? null);
		// Handed over ahead of the instant: prefire (claim, record and spawn now, release at the
		// instant) or wait for the instant.
		// Parked processes (prefired, their instant not come) take at most half the process slots:
		// the other half stays for the fires taken at their instant, which would otherwise wait for a
		// slot held by a parked process (a lead of seconds times the fires a second can be more than
		// all the slots). Released ones are running like any other: counting them too refused the
		// next second's prefire to every job whose run was still going (cluster-lag, 67 per-second
		// jobs on 256 slots: 134 in use at each instant, the last few fires taken late).
		const now = clock.now();
		const slotFree = this.parked.count(now) < slots.limit / 2 && slots.running < slots.limit && slots.queued === 0 && backlog.calm();
		const mode = prefireDecision(job, { trigger, attempt, at: scheduledAt }, now, this.deps.lead.current(), slotFree);
		// A prefired fire holds its process slot from now on (given to the process, or dropped
		// below): the slots bound the prefired fires. It takes no room in the backlog's capacity,
		// which is for the fires taken on at their instant (a held fire waits without using the
		// machine, and a lead of seconds would otherwise fill the capacity with parked fires).
		let slot = mode === "prefire" ? this.parked.slot(slots.tryAcquire(), scheduledAt) : null;
		let ticket: Ticket | null = null;
		const dropSlot = () => {
			slot?.();
			slot = null;
			ticket?.();
			ticket = null;
		};
		if (mode === "wait") {
			fire.to({ stage: "waiting", until: scheduledAt });
			await new Promise<void>((r) => clock.setTimeout(r, scheduledAt - clock.now()));
			const current = state.mayFireAt(job.id, scheduledAt);
			if (state.stopping || !current) return fire.end("dropped");
			fire.job = current;
		}
		if (mode !== "prefire") {
			if (trigger === "manual" || trigger === "retry") ticket = backlog.enterNow();
			else {
				let admission = backlog.enter(fire.job, scheduledAt);
				if (admission instanceof Promise) {
					fire.to({ stage: "queued" });
					admission = await admission;
				}
				if ("missed" in admission) return fire.end("missed"); // recorded by the backlog
				if ("dropped" in admission) return fire.end("dropped");
				ticket = admission.ticket;
				fire.job = admission.job;
			}
		}
		const times: StageTimes = { entered: clock.now(), claimed: 0, recorded: 0 };
		if (trigger !== "retry") {
			const running = state.activeOf(job.id);
			const decision = overlapDecision(fire.job.concurrency, running.size);
			if (decision === "skip") {
				dropSlot();
				fire.end("skipped");
				await this.deps.recorder.notRun(fire.job, scheduledAt, trigger, "skipped", "the previous run is still running (concurrency forbid)");
				return null;
			}
			if (decision === "replace") for (const r of running) r.controller.abort();
		}

		fire.to({ stage: "claiming" });
		let claim: Claim | null;
		try {
			claim = await this.deps.coordination.claim(job.id, scheduledAt, this.deps.nodeId);
			times.claimed = clock.now();
		} catch (err) {
			dropSlot();
			this.deps.logger.error(`Cannot claim job ${job.id} at ${new Date(scheduledAt).toISOString()}:`, (err as Error).message);
			// The connection dropped between the timer and the claim: give the fire back to the crontab,
			// where the loop's resume() finds it on reconnect (misfire policy), instead of losing it. The
			// claim's answer (connection loss) can come before the session's change of state: a
			// transient failure counts as a drop even while the session still says "connected" (the
			// fire is then tried again shortly: fire-loop.ts GIVE_BACK_RETRY_MS).
			const dropped = this.deps.coordination.state() !== "connected" || isRetryable(err);
			if ((trigger === "schedule" || trigger === "catchup") && !state.stopping && dropped) {
				this.deps.giveBack(fire.job, scheduledAt);
				return fire.end("given-back");
			}
			return fire.end("claim-failed");
		}
		if (!claim) {
			dropSlot();
			// Held under our own name but not by a fire of ours: a claim made by our previous session,
			// whose answer was lost with the connection (the server kept the node, and keeps it until
			// that session expires there). Not another worker's: try again once it is gone.
			if ((trigger === "schedule" || trigger === "catchup") && !state.stopping && (await this.staleOwnClaim(job.id, scheduledAt))) {
				this.deps.giveBack(fire.job, scheduledAt, STALE_CLAIM_RETRY_MS);
				return fire.end("given-back");
			}
			return fire.end("claim-lost"); // another worker holds this fire
		}

		fire.to({ stage: "recording" });
		let run: Run | null;
		try {
			run = await this.deps.recorder.start(job.id, scheduledAt, attempt, trigger);
			times.recorded = clock.now();
		} catch (err) {
			dropSlot();
			await claim.release().catch(() => undefined);
			fire.end("unstarted");
			if (trigger === "manual") throw err; // the caller gets the 503
			// The database is down: the fire did not run. Keep it for the misfire policy once the
			// database answers (recovery.ts, "database-down"): it must not be dropped silently.
			this.deps.logger.error(`Cannot record the start of job ${job.id} at ${new Date(scheduledAt).toISOString()} (kept to catch up):`, (err as Error).message);
			this.deps.recovery().keepUnstarted(job.id, scheduledAt, attempt);
			return null;
		}
		if (!run) {
			dropSlot();
			await claim.release().catch(() => undefined);
			return fire.end("duplicate"); // already ran (unique key)
		}

		this.deps.recorder.stats.fired++;
		fire.runId = run.id;
		const held = slot;
		const admitted = ticket;
		slot = null;
		ticket = null;
		fire.done = this.runToEnd(fire, run, claim, mode === "prefire" ? scheduledAt : null, held, times).finally(admitted);
		// Registered now, not before the awaits above: fires of one job overlap (prefire).
		state.addActive(fire);
		void fire.done.finally(() => state.removeActive(fire));
		return run;
	}

	/** From the recorded start to the recorded result (and a retry), then the claim goes back. */
	private async runToEnd(fire: Fire, run: Run, claim: Claim, releaseAt: number | null, slot: (() => void) | null, times: StageTimes): Promise<void> {
		const { state, recorder } = this.deps;
		try {
			let result = await this.execute(fire, run, releaseAt, slot);
			// Held and cancelled by a reload of the job: prepare it again from the new definition (same
			// claim, same run), or record it skipped; its code never ran.
			while (result.released === false && fire.controller.signal.reason instanceof HeldJobChanged) {
				const current = state.stopping ? null : state.mayFireAt(fire.jobId, fire.scheduledAt);
				if (!current) {
					recorder.stats.skipped++;
					fire.to({ stage: "finishing", runId: run.id, status: "skipped" });
					await recorder.finish(
						fire.job,
						run,
						{ ...result, error: "cancelled before its instant: the job was deleted, suspended or rescheduled" },
						false,
						"skipped",
					);
					fire.end("cancelled");
					return;
				}
				fire.job = current;
				fire.controller = new AbortController();
				result = await this.execute(fire, run, releaseAt, null);
			}
			// The worker stopped before the process started: nothing ran. The row stays `running`; with
			// its claim gone, the job's next worker (or this one restarted) finds it and runs it again.
			if (state.stopping && result.released === false) {
				fire.end("abandoned");
				return;
			}
			if (fire.trigger === "schedule" && result.exitCode !== null) this.deps.stages.add(fire.scheduledAt, times, result.startedAt);
			// A prefired fire whose process was ready only after its instant: the lead was too short.
			const started = result.released !== false && (result.exitCode !== null || result.signal !== null);
			if (releaseAt !== null && started) this.deps.lead.observe(times.entered, fire.scheduledAt, result.startedAt, result.readyAt);
			const willRetry = !fire.controller.signal.aborted && shouldRetry(result.status, fire.attempt, fire.job.retries);
			fire.to({ stage: "finishing", runId: run.id, status: result.status });
			await recorder.finish(fire.job, run, result, willRetry);
			if (result.status === "succeeded") recorder.stats.succeeded++;
			else recorder.stats.failed++;
			fire.end("finished");
			if (willRetry && !state.stopping) this.retryLater(fire);
		} finally {
			await claim.release().catch(() => undefined);
		}
	}

	/**
	 * Whether (job, at) is claimed under this worker's name without a fire of ours holding it, or no
	 * longer claimed at all (the holder went between our claim and this look, as a stale claim of
	 * ours does when its session expires): either way the fire may still be ours to run. Given back
	 * and tried again, a fire that another worker did run meets its run's unique key ("duplicate").
	 */
	private async staleOwnClaim(jobId: string, at: number): Promise<boolean> {
		if ([...this.deps.state.activeOf(jobId)].some((f) => f.scheduledAt === at)) return false;
		try {
			const owner = await this.deps.coordination.claimOwner(jobId, at);
			return owner === null || owner === this.deps.nodeId;
		} catch {
			return this.deps.coordination.state() !== "connected"; // dropped again: give it back
		}
	}

	/** The next attempt after the backoff, if the job is still ours then. */
	private retryLater(fire: Fire): void {
		this.deps.clock.setTimeout(() => {
			const current = this.deps.state.mayFire(fire.jobId);
			if (current) void this.fire(current, fire.scheduledAt, "retry", fire.attempt + 1);
		}, retryDelayMs(fire.attempt));
	}

	/** Prepare and run the process; `slot` is the one a prefired fire already holds. */
	private async execute(fire: Fire, run: Run, releaseAt: number | null, slot: (() => void) | null): Promise<ProcessResult> {
		const { clock } = this.deps;
		fire.to(releaseAt !== null ? { stage: "held", runId: run.id, releaseAt } : { stage: "running", runId: run.id });
		let prepared;
		try {
			prepared = await this.deps.runner.prepare(fire.job, run, fire.attempt, { signal: fire.controller.signal, releaseAt });
		} catch (err) {
			slot?.();
			return failedBeforeStart(clock.now(), (err as Error).message);
		}
		const free = slot ?? (await this.deps.slots.acquire());
		try {
			if (this.deps.state.stopping && !fire.controller.signal.aborted) {
				// Queued behind a backlog when the worker stops: it never started (see runToEnd).
				return failedBeforeStart(clock.now(), "the worker stopped before the run started", false);
			}
			const result = await prepared.start();
			// cronjob_fire_lag_seconds: start minus scheduled instant (first attempts of processes that
			// started; a retry's lag is its backoff).
			if (fire.attempt === 1 && result.released !== false && (result.exitCode !== null || result.signal !== null)) {
				this.deps.metrics.fireLag(Math.max(0, result.startedAt - fire.scheduledAt) / 1000);
			}
			return result;
		} finally {
			free();
			prepared.dispose();
		}
	}

	/**
	 * The job was reloaded: its fires still held are kept, rebuilt from the new definition, or
	 * cancelled (heldFireAfterReload); runToEnd does the rebuild or records the skip. A job moved to
	 * another worker keeps its held fires here (the new owner cannot claim them) unless it was
	 * deleted, suspended or rescheduled.
	 */
	reviewHeld(jobId: string, fresh: WorkerJob | null, unassigned = false): void {
		const now = this.deps.clock.now();
		for (const fire of this.deps.state.activeOf(jobId)) {
			if (!fire.heldAt(now)) continue;
			const view = fresh && { updatedAt: fresh.updatedAt, schedulable: schedulable(fresh), firesAt: this.deps.state.firesAt(fresh, fire.scheduledAt) };
			const decision = heldFireAfterReload(fire.job, view);
			if (decision === "cancel" || (decision === "rebuild" && !unassigned)) fire.controller.abort(new HeldJobChanged());
		}
	}

	/** Whether any fire of these jobs is held now. */
	heldJobs(jobIds: string[]): string[] {
		const now = this.deps.clock.now();
		return jobIds.filter((id) => [...this.deps.state.activeOf(id)].some((f) => f.heldAt(now)));
	}
}
