import { createIngestMetrics } from '../ingest/metrics.ts'
import { addProcessMetrics, counter, gauge, Registry } from '../metrics.ts'

/** Every metric the deployed process serves on /metrics, named once so tests and dashboards agree. */
export function createServiceMetrics(registry = new Registry()) {
  addProcessMetrics(registry)
  return {
    registry,
    ingest: createIngestMetrics(registry),
    outbox: gauge(registry, 'moodsync_outbox', 'Writer outbox by state: pending, failed, unconfirmed (written, no echo after 5 min)', ['state']),
    backfill: {
      queue: gauge(registry, 'moodsync_backfill_queue', 'Repos waiting to be read whole (gaps, #sync)'),
      repos: counter(registry, 'moodsync_backfill_repos_total', 'Repos read whole by the background backfill, by outcome', ['outcome']),
    },
  }
}

export type ServiceMetrics = ReturnType<typeof createServiceMetrics>
