/** The injectable clock: every time read and every timer of the engines goes through one. Tests pass a fake. */
export interface Clock {
	/** Milliseconds since the epoch. */
	now(): number;
	setTimeout(fn: () => void, ms: number): TimerHandle;
	clearTimeout(handle: TimerHandle): void;
}

export interface TimerHandle {
	readonly id: unknown;
}
