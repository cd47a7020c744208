import { describe, expect, it } from 'vitest';
import { EDGE_VERSION } from '../../edge/edge.js';
import { isDialcoreEdgeVersion } from './srf.js';

describe('isDialcoreEdgeVersion', () => {
  it('is true for the version the dialcore edge announces, false for drachtio-server releases and builds', () => {
    expect(isDialcoreEdgeVersion(EDGE_VERSION)).toBe(true);
    for (const version of ['v0.9.10', 'v0.9.10-1-g9c2dd4cb6a', 'v0.8.26-rc3', '', undefined]) {
      expect(isDialcoreEdgeVersion(version), String(version)).toBe(false);
    }
  });
});
