import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      {
        // Pure logic: no servers.
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'] },
      },
      {
        // A real PDS (dev-env) and a real MongoDB-wire server (FerretDB, or MONGODB_URI).
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['rig/global-setup.ts'],
          // Real servers on a loaded two-core machine: generous, and still a deadline.
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
})
