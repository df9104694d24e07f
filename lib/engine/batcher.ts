/**
 * Coalesces calls made in the same turn of the event loop into one batch call, so that a hundred
 * fires due at the same second cost one database transaction instead of a hundred. Each caller gets
 * its own result (or the batch's error). The flush is scheduled by the injected `schedule` (the
 * engine passes its clock's zero-delay timer).
 *
 * Group commit: at most `concurrency` batches (default 1) are in flight; what arrives meanwhile
 * waits and goes as the next batch when one ends. Under load the batches grow instead of their
 * number: the database sees a few large transactions rather than a queue of small ones that it
 * works through one at a time (SQLite) or that contend for the same rows (MySQL).
 */
export class Batcher<I, O> {
	private items: { item: I; resolve(o: O): void; reject(e: unknown): void }[] = [];
	private scheduled = false;
	private flying = 0;

	constructor(
		private readonly run: (items: I[]) => Promise<O[]>,
		private readonly opts: { maxBatch?: number; concurrency?: number; schedule: (fn: () => void) => void },
	) {}

	add(item: I): Promise<O> {
		return new Promise<O>((resolve, reject) => {
			this.items.push({ item, resolve, reject });
			if ((this.opts.maxBatch ?? 500) <= this.items.length) this.flush();
			else if (!this.scheduled) {
				this.scheduled = true;
				this.opts.schedule(() => {
					this.scheduled = false;
					this.flush();
				});
			}
		});
	}

	get pending(): number {
		return this.items.length;
	}

	private flush(): void {
		// A batch in flight takes what waits when it ends.
		if (this.items.length === 0 || this.flying >= (this.opts.concurrency ?? 1)) return;
		const batch = this.items.splice(0, this.opts.maxBatch ?? 500);
		this.flying++;
		const ended = () => {
			this.flying--;
			this.flush();
		};
		this.run(batch.map((b) => b.item))
			.then(
				(out) => {
					if (out.length !== batch.length) {
						const err = new Error(`batch answered ${out.length} results for ${batch.length} items`);
						for (const b of batch) b.reject(err);
						return;
					}
					batch.forEach((b, i) => b.resolve(out[i]));
				},
				(err) => {
					for (const b of batch) b.reject(err);
				},
			)
			.finally(ended);
	}
}
