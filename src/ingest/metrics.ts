import { Counter, Gauge, Histogram, Registry } from '../metrics.ts'

/** The indexer's metrics, named once so tests and dashboards agree. */
export function createIngestMetrics(registry = new Registry()) {
  return {
    registry,
    received: registry.add(new Counter('moodsync_events_received_total', 'Events received from the source, by kind')),
    applied: registry.add(new Counter('moodsync_records_applied_total', 'Record operations applied to MongoDB, by result')),
    quarantined: registry.add(new Counter('moodsync_quarantined_total', 'Records and events sent to quarantine, by kind')),
    accounts: registry.add(new Counter('moodsync_account_events_total', 'Account status changes applied, by action')),
    gaps: registry.add(new Counter('moodsync_gaps_total', 'Missed stretches of the stream detected')),
    resyncs: registry.add(new Counter('moodsync_resyncs_total', 'Repos that announced their whole state (#sync) and were queued for backfill')),
    reconnects: registry.add(new Counter('moodsync_reconnects_total', 'Source reconnections')),
    storeErrors: registry.add(new Counter('moodsync_store_errors_total', 'Batches that failed to apply and were retried')),
    lag: registry.add(new Gauge('moodsync_lag_seconds', 'Seconds between the network emitting the last applied event and its apply')),
    connected: registry.add(new Gauge('moodsync_connected', '1 while the source is connected')),
    cursor: registry.add(new Gauge('moodsync_cursor', 'Last saved cursor')),
    batchSize: registry.add(new Histogram('moodsync_batch_size', 'Events per applied batch', [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000])),
    applySeconds: registry.add(
      new Histogram('moodsync_apply_seconds', 'Time to apply one batch to MongoDB', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]),
    ),
  }
}

export type IngestMetrics = ReturnType<typeof createIngestMetrics>
