/**
 * The prefire lead in use: how far ahead of its instant a prefired fire is handed over (claimed,
 * recorded, its process spawned and held). It starts at the configured lead and follows reality:
 * a prefired fire whose process was ready (spawned and held) only after its instant shows that
 * claim + record + spawn took longer than the lead, so the lead grows by that lateness with a margin
 * (at most to `maxMs`); after a run of fires on time it shrinks back toward the configured lead.
 *
 * A fire that was ready in time but released late (the machine busy at the instant) does not grow
 * the lead: a longer lead would not start it sooner, and it would hold more processes for longer, up
 * to the prefire bound of half the slots, past which fires are no longer prefired at all and start
 * later still (cluster-lag showed that loop: the lead grew to 1.4 s on release delays alone).
 */

/**
 * Later than this after its instant, a prefired fire counts as late. Below it the lateness is the
 * release itself (the held processes of one instant are released one after the other), which no
 * lead would cure.
 */
export const LATE_SLACK_MS = 25;
/** A late fire's lateness, times this, is added to the lead it was handed over with. */
const MARGIN = 1.5;
/** Fires on time in a row before the lead shrinks by a quarter of what it grew (at least 1 ms). */
const SHRINK_AFTER = 100;

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
	 * A prefired fire was handed over at `handedAt` for `scheduledAt`, its process was ready (held)
	 * at `readyAt` (when the runner tells; else the start stands for it) and its code started at
	 * `startedAt` (the release of its held process).
	 */
	observe(handedAt: number, scheduledAt: number, startedAt: number, readyAt: number = startedAt): void {
		if (this.baseMs <= 0) return;
		const late = Math.min(startedAt, readyAt) - scheduledAt;
		if (late > LATE_SLACK_MS) {
			this.onTime = 0;
			// It was handed over `scheduledAt - handedAt` ahead and was `late` even so: that lead plus
			// the lateness with a margin. (Not the whole hand-over-to-start time with a margin: that
			// time includes the lead itself, and every late fire would multiply the lead by the margin
			// until it reached its bound.) The most of those, not their sum: the late fires of one
			// burst all ask for about the same lead.
			const needed = scheduledAt - handedAt + Math.ceil(late * MARGIN);
			this.lead = Math.min(this.maxMs, Math.max(this.lead, needed));
			return;
		}
		if (++this.onTime >= SHRINK_AFTER && this.lead > this.baseMs) {
			this.onTime = 0;
			this.lead = Math.max(this.baseMs, this.lead - Math.ceil((this.lead - this.baseMs) / 4));
		}
	}
}
