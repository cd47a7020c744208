/**
 * Test harness for integration suites: real Redis, rtpengine and SIPp peers on 127.0.0.1,
 * each on ports of its own, stopped by the suite (and killed if the test process dies).
 */
export { freePort, freePorts, freePortRange, releasePort, type PortRange } from './ports.js';
export { spawnService, makeServiceDir, waitUntil, isBound, type Service, type ServiceOptions, type ServiceExit } from './service.js';
export { startRedis, startRedisSentinel, startRedisCluster, redisAnswersPing, type RedisServer, type RedisSentinel, type RedisCluster, type RedisClusterNode } from './redis.js';
export { startRtpengine, rtpengineAnswersPing, type RtpengineServer, type RtpengineOptions } from './rtpengine.js';
export { startDrachtioServer, type DrachtioServer, type DrachtioServerOptions, type DrachtioProtocol } from './drachtio-server.js';
export {
  runSipp,
  startSippServer,
  parseSippStatsCsv,
  readSippResponseTimes,
  type SippOptions,
  type SippResult,
  type SippServer,
  type SippStats,
  type SippTransport,
  type SippInjection,
} from './sipp.js';
