/** The injectable clock. Services take one; tests pass a fake. */
export interface Clock {
	/** Milliseconds since the epoch. */
	now(): number;
	setTimeout(fn: () => void, ms: number): TimerHandle;
	clearTimeout(handle: TimerHandle): void;
}

export interface TimerHandle {
	readonly id: unknown;
}

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
