/**
 * A counting semaphore: at most `limit` holders at once, the rest wait in FIFO order, those that
 * asked with `background` after all the others. The worker uses it to bound the processes it runs
 * at once; the jobs service, to run one SQLite transaction at a time with the API's calls ahead of
 * the run ledger's batches (background), so that a stream of fires does not starve job reads and
 * writes (a batch grows while it waits: nothing is lost by waiting).
 */
export class Limiter {
	private active = 0;
	private readonly waiting: (() => void)[] = [];
	private readonly behind: (() => void)[] = [];

	constructor(readonly limit: number) {
		if (!(limit >= 1)) throw new Error("limit must be at least 1");
	}

	get running(): number {
		return this.active;
	}

	get queued(): number {
		return this.waiting.length + this.behind.length;
	}

	/** A free slot taken now (nobody waiting ahead), or null. */
	tryAcquire(): (() => void) | null {
		if (this.active >= this.limit || this.queued > 0) return null;
		this.active++;
		return this.releaser();
	}

	async acquire(background = false): Promise<() => void> {
		if (this.active < this.limit) this.active++;
		else await new Promise<void>((resolve) => (background ? this.behind : this.waiting).push(resolve));
		return this.releaser();
	}

	private releaser(): () => void {
		let released = false;
		return () => {
			if (released) return;
			released = true;
			const next = this.waiting.shift() ?? this.behind.shift();
			if (next) next();
			else this.active--;
		};
	}
}
