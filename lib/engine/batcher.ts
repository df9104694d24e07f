/**
 * Coalesces calls made in the same turn of the event loop into one batch call, so that a hundred
 * fires due at the same second cost one database transaction instead of a hundred. Each caller gets
 * its own result (or the batch's error). The flush is scheduled by the injected `schedule` (the
 * engine passes its clock's zero-delay timer).
 *
 * A batch closes at `maxBatch` items or, with `weigh`, at `maxWeight` (a message size the transport
 * refuses past, say).
 *
 * Group commit: at most `concurrency` batches (default 1) are in flight; what arrives meanwhile
 * waits and goes as the next batch when one ends. Under load the batches grow instead of their
 * number: the database sees a few large transactions rather than a queue of small ones that it
 * works through one at a time (SQLite) or that contend for the same rows (MySQL).
 */
export interface BatchBounds<I> {
	/** Items per batch (default 500). */
	maxBatch?: number;
	/** With maxWeight: an item's weight (its size on the wire, say). */
	weigh?: (item: I) => number;
	/** A batch's total weight at most this, but for a single item heavier on its own. */
	maxWeight?: number;
}

/** How many of `items`, from the front, make the next batch under `bounds` (at least one of a non-empty list). */
export function batchLength<I>(items: readonly I[], bounds: BatchBounds<I>): number {
	const max = Math.min(items.length, bounds.maxBatch ?? 500);
	if (!bounds.weigh || bounds.maxWeight === undefined) return max;
	let weight = 0;
	for (let n = 0; n < max; n++) {
		weight += bounds.weigh(items[n]);
		if (weight > bounds.maxWeight) return Math.max(1, n);
	}
	return max;
}

export class Batcher<I, O> {
	private items: { item: I; resolve(o: O): void; reject(e: unknown): void }[] = [];
	private scheduled = false;
	private flying = 0;
	/** The waiting items' weight (with opts.weigh). */
	private weight = 0;
	private readonly bounds: BatchBounds<{ item: I }>;

	constructor(
		private readonly run: (items: I[]) => Promise<O[]>,
		private readonly opts: BatchBounds<I> & { concurrency?: number; schedule: (fn: () => void) => void },
	) {
		const weigh = opts.weigh;
		this.bounds = { maxBatch: opts.maxBatch, maxWeight: opts.maxWeight, weigh: weigh && ((w) => weigh(w.item)) };
	}

	add(item: I): Promise<O> {
		return new Promise<O>((resolve, reject) => {
			this.items.push({ item, resolve, reject });
			if (this.opts.weigh) this.weight += this.opts.weigh(item);
			if ((this.opts.maxBatch ?? 500) <= this.items.length || this.weight >= (this.opts.maxWeight ?? Infinity)) this.flush();
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
		const batch = this.items.splice(0, batchLength(this.items, this.bounds));
		if (this.opts.weigh) for (const b of batch) this.weight -= this.opts.weigh(b.item);
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
