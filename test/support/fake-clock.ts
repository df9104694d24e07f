/**
 * A fake Clock (lib/core/clock.ts) for the engines' tests: time moves only when the test says so.
 *
 * - now() starts at `start` and changes only through advance()/advanceTo();
 * - setTimeout() queues a timer due at now + max(0, ms); timers run in order of due time, timers due
 *   at the same time in the order they were set;
 * - advance(ms) runs every timer due up to now + ms, in order, with now() at each timer's due time,
 *   and lets pending work settle before and after each one (promise callbacks and the I/O
 *   callbacks of setImmediate, which in-process fakes such as MemoryCoordination use), so that a
 *   timer set by the work a timer started runs in the same advance if it is due by then.
 *
 * It sets no real timer (no global setTimeout or setInterval): a test may spy on those to check
 * that the code under test uses only its injected clock.
 */
import type { Clock, TimerHandle } from "../../lib/core/clock";

interface Timer {
	handle: TimerHandle;
	due: number;
	seq: number;
	fn: () => void;
}

export interface FakeClockOptions {
	/** The initial now(), in ms since the epoch. */
	start?: number;
	/** The setImmediate turns settle() waits (each turn also runs every queued promise callback). */
	settleTurns?: number;
}

export class FakeClock implements Clock {
	private current: number;
	private readonly settleTurns: number;
	private readonly timers: Timer[] = [];
	private seq = 0;

	constructor(opts: FakeClockOptions = {}) {
		this.current = opts.start ?? Date.UTC(2030, 0, 1);
		this.settleTurns = opts.settleTurns ?? 20;
	}

	now(): number {
		return this.current;
	}

	setTimeout(fn: () => void, ms: number): TimerHandle {
		const delay = Number.isFinite(ms) ? Math.max(0, ms) : 0;
		const timer: Timer = { handle: { id: ++this.seq }, due: this.current + delay, seq: this.seq, fn };
		// Keep the queue sorted by (due, seq).
		let i = this.timers.length;
		while (i > 0 && (this.timers[i - 1].due > timer.due || (this.timers[i - 1].due === timer.due && this.timers[i - 1].seq > timer.seq))) i--;
		this.timers.splice(i, 0, timer);
		return timer.handle;
	}

	clearTimeout(handle: TimerHandle): void {
		const i = this.timers.findIndex((t) => t.handle === handle);
		if (i >= 0) this.timers.splice(i, 1);
	}

	/** The timers not yet run. */
	get pending(): number {
		return this.timers.length;
	}

	/** The due time of the next timer, or null. */
	nextDue(): number | null {
		return this.timers[0]?.due ?? null;
	}

	/** Let pending promise callbacks and setImmediate callbacks run, without moving time. */
	async settle(): Promise<void> {
		for (let i = 0; i < this.settleTurns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
	}

	/** Move time forward by `ms`, running the timers due meanwhile in order (see the file comment). */
	async advance(ms: number): Promise<void> {
		if (!(ms >= 0)) throw new Error(`cannot advance by ${ms} ms`);
		await this.advanceTo(this.current + ms);
	}

	/** Move time forward to `time` (not backward), running the timers due meanwhile in order. */
	async advanceTo(time: number): Promise<void> {
		if (time < this.current) throw new Error(`cannot go back from ${this.current} to ${time}`);
		await this.settle();
		for (;;) {
			const next = this.timers[0];
			if (!next || next.due > time) break;
			await this.runNext();
		}
		this.current = time;
		await this.settle();
	}

	/** Run timers until none is left (or `maxTimers` ran: a timer that re-arms itself never ends). */
	async runAll(maxTimers = 1000): Promise<void> {
		await this.settle();
		for (let n = 0; this.timers.length > 0; n++) {
			if (n >= maxTimers) throw new Error(`more than ${maxTimers} timers ran`);
			await this.runNext();
		}
	}

	/** Run the first timer at its due time, then let its work settle. */
	private async runNext(): Promise<void> {
		const next = this.timers.shift()!;
		this.current = next.due;
		next.fn();
		await this.settle();
	}
}
