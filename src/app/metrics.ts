import { createIngestMetrics } from '../ingest/metrics.ts'
import { Counter, Gauge, Registry } from '../metrics.ts'

/** Every metric the deployed process serves on /metrics, named once so tests and dashboards agree. */
export function createServiceMetrics(registry = new Registry()) {
  return {
    registry,
    ingest: createIngestMetrics(registry),
    outbox: registry.add(new Gauge('moodsync_outbox', 'Writer outbox by state: pending, failed, unconfirmed (written, no echo after 5 min)')),
    backfill: {
      queue: registry.add(new Gauge('moodsync_backfill_queue', 'Repos waiting to be read whole (gaps, #sync)')),
      repos: registry.add(new Counter('moodsync_backfill_repos_total', 'Repos read whole by the background backfill, by outcome')),
    },
  }
}

export type ServiceMetrics = ReturnType<typeof createServiceMetrics>
