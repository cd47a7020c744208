/**
 * Agent sessions and the dialer control API, wired for the core: the service, its Redis state,
 * the control event bus, the API routes and the event WebSocket.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ApiRoute, ApiUpgrade } from '../admin/server.js';
import type { Redis } from '../users/redis.js';
import { AgentService, type AgentServiceOptions } from './agent-service.js';
import { AgentStateStore } from './agent-state.js';
import { controlApiRoutes, controlEventsUpgrade } from './control-api.js';
import { ControlEventBus } from './control-events.js';
import { writeAgentPrompts } from './prompts.js';

export { AgentService, ControlError } from './agent-service.js';
export { ControlEventBus, type ControlEvent } from './control-events.js';
export { SipLeg } from './sip-leg.js';
export { answerLeg } from './answer.js';
export { JanusConferenceBridge, type ConferenceBridge } from './conference.js';

export interface AgentFeature {
  service: AgentService;
  events: ControlEventBus;
  api: { routes: ApiRoute[]; upgrades: ApiUpgrade[] };
  apiListening(url: string): void;
  stop(): Promise<void>;
}

export type AgentFeatureOptions = Omit<AgentServiceOptions, 'state' | 'events' | 'instanceId' | 'prompts'> & {
  redis: Redis;
  promptsDir: string;
  holdMusic?: string | null;
  instanceId?: string;
  logger?: Logger;
};

export async function startAgentFeature(options: AgentFeatureOptions): Promise<AgentFeature> {
  const instanceId = options.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const state = new AgentStateStore(options.redis, instanceId);
  const events = new ControlEventBus(options.redis, instanceId, options.logger);
  await events.start();
  let apiUrl: string | null = null;
  await state.start(() => apiUrl);
  const prompts = writeAgentPrompts(options.promptsDir, options.holdMusic ? { holdMusic: options.holdMusic } : {});
  const service = new AgentService({ ...options, state, events, instanceId, prompts });
  const stream = controlEventsUpgrade(events);
  return {
    service,
    events,
    api: { routes: controlApiRoutes(service, options.logger), upgrades: [stream] },
    apiListening(url) {
      apiUrl = url;
      void state.refresh().catch(() => undefined);
    },
    async stop() {
      await service.stop();
      stream.close();
      await events.stop();
      await state.stop();
    },
  };
}
