// A sampler that cannot be built from this config and dataset: a user-facing error whose message
// names the config field or dataset table at fault (the project's rule for bad input).
export class SamplerError extends Error {
  override readonly name = 'SamplerError';
}
