/**
 * The prefire lead in use: how far ahead of its instant a prefired fire is handed over (claimed,
 * recorded, its process spawned and held). It starts at the configured lead and follows reality:
 * a prefired fire whose code started after its instant shows that claim + record + spawn took longer
 * than the lead, so the lead grows to cover that time with a margin (at most `maxMs`); after a long
 * run of fires on time it shrinks back toward the configured lead.
 */

/** Later than this after its instant, a prefired fire counts as late. */
export const LATE_SLACK_MS = 5;
/** The lead covers the slowest recent hand-over-to-start time times this. */
const MARGIN = 1.5;
/** Fires on time in a row before the lead shrinks by a tenth of what it grew (at least 1 ms). */
const SHRINK_AFTER = 200;

export class PrefireLead {
	private lead: number;
	private onTime = 0;

	constructor(
		private readonly baseMs: number,
		private readonly maxMs: number,
	) {
		this.lead = baseMs;
	}

	/** The lead to use now, ms (0: prefire is off). */
	current(): number {
		return this.lead;
	}

	/**
	 * A prefired fire was handed over at `handedAt` for `scheduledAt`, and its code started at
	 * `startedAt` (the release of its held process).
	 */
	observe(handedAt: number, scheduledAt: number, startedAt: number): void {
		if (this.baseMs <= 0) return;
		if (startedAt - scheduledAt > LATE_SLACK_MS) {
			this.onTime = 0;
			const needed = Math.ceil((startedAt - handedAt) * MARGIN);
			this.lead = Math.min(this.maxMs, Math.max(this.lead, needed));
			return;
		}
		if (++this.onTime >= SHRINK_AFTER && this.lead > this.baseMs) {
			this.onTime = 0;
			this.lead = Math.max(this.baseMs, this.lead - Math.ceil((this.lead - this.baseMs) / 10));
		}
	}
}
