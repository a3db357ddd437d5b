import { counter, gauge, histogram, Registry } from '../metrics.ts'

/** The indexer's metrics, named once so tests and dashboards agree. */
export function createIngestMetrics(registry = new Registry()) {
  // Set by the indexer that reports through these: lag and the connection are read at each scrape.
  const live: { lagSeconds?: () => number; connected?: () => number } = {}
  return {
    registry,
    live,
    received: counter(registry, 'moodsync_events_received_total', 'Events received from the source, by kind', ['kind']),
    applied: counter(registry, 'moodsync_records_applied_total', 'Record operations applied to MongoDB, by result', ['result']),
    quarantined: counter(registry, 'moodsync_quarantined_total', 'Records and events sent to quarantine, by kind', ['kind']),
    accounts: counter(registry, 'moodsync_account_events_total', 'Account status changes applied, by action', ['action']),
    gaps: counter(registry, 'moodsync_gaps_total', 'Missed stretches of the stream detected'),
    resyncs: counter(registry, 'moodsync_resyncs_total', 'Repos that announced their whole state (#sync) and were queued for backfill'),
    reconnects: counter(registry, 'moodsync_reconnects_total', 'Source reconnections'),
    storeErrors: counter(registry, 'moodsync_store_errors_total', 'Batches that failed to apply and were retried'),
    lag: gauge(registry, 'moodsync_lag_seconds', 'Seconds the indexer is behind the network now (grows while the line is dead, not while it is quiet)', [], () => live.lagSeconds?.()),
    connected: gauge(registry, 'moodsync_connected', '1 while the source is connected', [], () => live.connected?.()),
    cursor: gauge(registry, 'moodsync_cursor', 'Last saved cursor'),
    batchSize: histogram(registry, 'moodsync_batch_size', 'Events per applied batch', [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]),
    applySeconds: histogram(registry, 'moodsync_apply_seconds', 'Time to apply one batch to MongoDB', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]),
  }
}

export type IngestMetrics = ReturnType<typeof createIngestMetrics>
