// Run TF.js graph models on fixed inputs with TensorFlow.js itself (CPU backend); the reference
// for benchmarks/tfjs_reference.py, which writes the job file and compares the outputs.
//
//   node benchmarks/tfjs_reference.mjs TFJS_DIR JOB.json
//
// TFJS_DIR holds node_modules/@tensorflow/tfjs (npm install --prefix TFJS_DIR @tensorflow/tfjs@4.22.0).
// JOB.json: {"out_dir": DIR, "models": [{"key", "model_json", "input_name", "input_file", "input_shape",
// "outputs": [node, ...]}]}. Inputs are raw little-endian float32 NHWC; each output is written as
// OUT_DIR/KEY__<index>.f32 and its shape listed in OUT_DIR/result.json.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [tfjsDir, jobFile] = process.argv.slice(2);
if (!tfjsDir || !jobFile) {
  console.error('usage: node tfjs_reference.mjs TFJS_DIR JOB.json');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(tfjsDir), 'package.json'));
let tf;
try {
  tf = require('@tensorflow/tfjs');
} catch (err) {
  console.error(`cannot load @tensorflow/tfjs from ${tfjsDir}/node_modules: ${err.message}`);
  process.exit(3);
}

function artifactsOf(modelJson) {
  const spec = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const dir = path.dirname(modelJson);
  const weightSpecs = [];
  const buffers = [];
  for (const group of spec.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return {
    modelTopology: spec.modelTopology, weightSpecs, weightData, format: spec.format,
    generatedBy: spec.generatedBy, convertedBy: spec.convertedBy, signature: spec.signature,
    userDefinedMetadata: spec.userDefinedMetadata,
  };
}

const job = JSON.parse(fs.readFileSync(jobFile, 'utf8'));
await tf.setBackend('cpu');
await tf.ready();
const result = { tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version, models: {} };
for (const m of job.models) {
  const model = await tf.loadGraphModel({ load: async () => artifactsOf(m.model_json) });
  const raw = fs.readFileSync(m.input_file);
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const x = tf.tensor(data, m.input_shape, 'float32');
  const t0 = Date.now();
  let outs = model.execute({ [m.input_name]: x }, m.outputs);
  if (!Array.isArray(outs)) outs = [outs];
  const shapes = [];
  for (let i = 0; i < outs.length; i++) {
    const values = await outs[i].data();
    fs.writeFileSync(path.join(job.out_dir, `${m.key}__${i}.f32`), Buffer.from(values.buffer, values.byteOffset, values.byteLength));
    shapes.push(outs[i].shape);
  }
  result.models[m.key] = { outputs: m.outputs, shapes, ms: Date.now() - t0 };
  tf.dispose([x, ...outs]);
  model.dispose();
}
fs.writeFileSync(path.join(job.out_dir, 'result.json'), JSON.stringify(result));
console.log(`tfjs ${result.tfjs} (${result.backend} backend, node ${result.node}): ${job.models.length} model(s) run`);
