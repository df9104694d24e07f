/**
 * A counting semaphore: at most `limit` holders at once, the rest wait in FIFO order. The worker
 * uses it to bound the processes it runs at once, so that an overload queues runs (their lag grows
 * and is recorded) instead of starving the event loop.
 */
export class Limiter {
	private active = 0;
	private readonly waiting: (() => void)[] = [];

	constructor(readonly limit: number) {
		if (!(limit >= 1)) throw new Error("limit must be at least 1");
	}

	get running(): number {
		return this.active;
	}

	get queued(): number {
		return this.waiting.length;
	}

	/** A free slot taken now (nobody waiting ahead), or null. */
	tryAcquire(): (() => void) | null {
		if (this.active >= this.limit || this.waiting.length > 0) return null;
		this.active++;
		return this.releaser();
	}

	async acquire(): Promise<() => void> {
		if (this.active < this.limit) this.active++;
		else await new Promise<void>((resolve) => this.waiting.push(resolve));
		return this.releaser();
	}

	private releaser(): () => void {
		let released = false;
		return () => {
			if (released) return;
			released = true;
			const next = this.waiting.shift();
			if (next) next();
			else this.active--;
		};
	}
}
