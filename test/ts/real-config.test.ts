// data.select and data.preprocess (issue #11): the LFW example config and the README's --set
// forms load with the real loader; bad values are refused naming the field.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../ts/config/load.ts';
import { REPO_ROOT } from '../../ts/controller/launch.ts';

function issues(fn: () => unknown) {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('data.select / data.preprocess', () => {
  it('defaults: no selection, no preprocessing', () => {
    const cfg = loadConfig();
    expect(cfg.data.select).toEqual({ min_images: 1, include: [], exclude: [], exclude_pairs: '', exclude_folds: [] });
    expect(cfg.data.preprocess).toEqual({ crop_center: [], crop_box: [], landmarks: '' });
  });

  it('docs/examples/lfw-aligned.yaml loads too', () => {
    const cfg = loadConfig({ preset: 'quick', file: join(REPO_ROOT, 'docs/examples/lfw-aligned.yaml') });
    expect(cfg.data).toMatchObject({ path: 'data/lfw-aligned', preprocess: { crop_box: [] } });
  });

  it('docs/examples/lfw-real.yaml with the quick preset', () => {
    const cfg = loadConfig({ preset: 'quick', file: join(REPO_ROOT, 'docs/examples/lfw-real.yaml') });
    expect(cfg.data).toMatchObject({ kind: 'folder', image_size: 64, preprocess: { crop_box: [70, 70, 110, 110] } });
    expect(cfg.data.select).toMatchObject({ min_images: 2, exclude_folds: [9, 10] });
    expect(cfg.train.steps).toBe(1500);
  });

  it("the README's --set forms", () => {
    const cfg = loadConfig({
      preset: 'quick',
      sets: ['data.select.min_images=2', 'data.select.exclude_folds=[9,10]', 'data.select.include=["a","b"]',
        'data.preprocess.crop_center=[110,110]', 'data.preprocess.landmarks=lm.txt'],
    });
    expect(cfg.data.select).toMatchObject({ min_images: 2, exclude_folds: [9, 10], include: ['a', 'b'] });
    expect(cfg.data.preprocess).toMatchObject({ crop_center: [110, 110], landmarks: 'lm.txt' });
  });

  it('refuses bad values naming the field', () => {
    const paths = (sets: string[]) => issues(() => loadConfig({ sets })).map((i) => i.path);
    expect(paths(['data.preprocess.crop_box=[1,2,3,4,5]'])).toContain('data.preprocess.crop_box');
    expect(paths(['data.select.min_images=0'])).toContain('data.select.min_images');
    expect(paths(['data.select.exclude_folds=[0]'])).toContain('data.select.exclude_folds.0');
    expect(paths(['data.select.nope=1'])).toContain('data.select.nope');
  });
});
