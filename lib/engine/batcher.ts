/**
 * Coalesces calls made in the same turn of the event loop into one batch call, so that a hundred
 * fires due at the same second cost one database transaction instead of a hundred. Each caller gets
 * its own result (or the batch's error). The flush is scheduled by the injected `schedule` (the
 * engine passes its clock's zero-delay timer).
 */
export class Batcher<I, O> {
	private items: { item: I; resolve(o: O): void; reject(e: unknown): void }[] = [];
	private scheduled = false;

	constructor(
		private readonly run: (items: I[]) => Promise<O[]>,
		private readonly opts: { maxBatch?: number; schedule: (fn: () => void) => void },
	) {}

	add(item: I): Promise<O> {
		return new Promise<O>((resolve, reject) => {
			this.items.push({ item, resolve, reject });
			if ((this.opts.maxBatch ?? 500) <= this.items.length) this.flush();
			else if (!this.scheduled) {
				this.scheduled = true;
				this.opts.schedule(() => this.flush());
			}
		});
	}

	get pending(): number {
		return this.items.length;
	}

	private flush(): void {
		this.scheduled = false;
		const batch = this.items;
		this.items = [];
		if (batch.length === 0) return;
		this.run(batch.map((b) => b.item)).then(
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
		);
	}
}
