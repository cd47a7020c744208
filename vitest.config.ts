import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'sip-tests/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // SIP suites start real processes (redis, rtpengine, SIPp) on their own loopback ports:
    // run files one at a time so bounded load tests don't starve each other on 2 cores.
    fileParallelism: false,
    pool: 'forks',
    reporters: ['default'],
  },
});
