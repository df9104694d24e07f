/**
 * Our Prometheus metrics. Moleculer's metric names use dots; its Prometheus reporter turns `.` and `-`
 * into `_`, so "cronjob.runs.total" is served as `cronjob_runs_total`. Each service registers the
 * metrics it owns on `broker.metrics` when metrics are enabled (METRICS_PORT set).
 *
 * Note: Moleculer 0.14's Prometheus reporter writes a histogram without quantiles as `_bucket` lines
 * only (no `_sum`/`_count`); the `le="+Inf"` bucket is the count.
 */
import type { ServiceBroker } from "moleculer";
import type { WorkerMetrics } from "../../engine/worker/ports";

export const METRICS = {
	/** counter, label status: succeeded, failed, timed_out, skipped, missed (worker). */
	runs: "cronjob.runs.total",
	/** histogram in seconds: process start minus scheduled instant, first attempts (worker). */
	fireLag: "cronjob.fire.lag.seconds",
	/** gauge: jobs on this worker's crontab. */
	workerJobs: "cronjob.worker.jobs",
	/** counter: times this manager became leader. */
	leaderChanges: "cronjob.leader.changes.total",
	/** counter: jobs moved from one worker to another by this manager. */
	reassignments: "cronjob.reassignments.total",
	/** gauge: 1 while this manager leads, else 0. */
	managerLeader: "cronjob.manager.leader",
} as const;

export const FIRE_LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Register a metric once per broker (two services of one broker may ask); no-op without metrics. */
export function registerMetric(
	broker: ServiceBroker,
	opts: { type: string; name: string; description: string; unit?: string; labelNames?: string[]; buckets?: number[] },
): void {
	if (!broker.isMetricsEnabled() || broker.metrics.getMetric(opts.name)) return;
	broker.metrics.register(opts);
}

/** The worker engine's metrics on the broker's registry (no-ops while metrics are off). */
export function workerMetrics(broker: ServiceBroker): WorkerMetrics {
	registerMetric(broker, { type: "counter", name: METRICS.runs, description: "Runs recorded by this worker, by status", labelNames: ["status"] });
	registerMetric(broker, {
		type: "histogram",
		name: METRICS.fireLag,
		description: "Process start minus scheduled instant (s)",
		unit: "seconds",
		buckets: FIRE_LAG_BUCKETS,
	});
	registerMetric(broker, { type: "gauge", name: METRICS.workerJobs, description: "Jobs on this worker's crontab" });
	const on = broker.isMetricsEnabled();
	if (on) broker.metrics.set(METRICS.workerJobs, 0);
	return {
		runRecorded: (status) => on && void broker.metrics.increment(METRICS.runs, { status }),
		fireLag: (seconds) => on && void broker.metrics.observe(METRICS.fireLag, seconds),
		crontabSize: (n) => on && void broker.metrics.set(METRICS.workerJobs, n),
	};
}
