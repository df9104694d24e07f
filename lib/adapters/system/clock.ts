/** The real clock: Date.now() and the global timers, behind the Clock interface. */
import type { Clock } from "../../core/clock";

export function systemClock(): Clock {
	return {
		now: () => Date.now(),
		setTimeout: (fn, ms) => {
			const t = setTimeout(fn, Math.max(0, ms));
			return { id: t };
		},
		clearTimeout: (h) => clearTimeout(h.id as NodeJS.Timeout),
	};
}
