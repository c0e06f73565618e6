// Run face-api.js itself (@vladmandic/face-api, its Node build, on TensorFlow.js's CPU backend) on fixed
// images; the reference for benchmarks/faceapi_reference.py, which writes the job file and compares.
//
//   node benchmarks/faceapi_reference.mjs TFJS_DIR FACEAPI_DIR JOB.json
//
// TFJS_DIR holds node_modules/@tensorflow/tfjs (4.22.0); FACEAPI_DIR is the unpacked npm package
// @vladmandic/face-api@1.7.15 (its dist/ and model/). Its Node build wants @tensorflow/tfjs-backend-wasm,
// which is not installed: an empty stand-in is handed to it and the CPU backend is used.
// JOB.json: {"out_dir", "model_dir", "min_confidence", "images": [{"key", "file", "shape": [h, w, 3]}],
// "crops": [{"key", "file", "shape"}]}. Images are raw uint8 RGB; for each image the SSD's raw
// boxes/scores (forwardInput) go to OUT_DIR/KEY.ssd_boxes.f32 / .ssd_scores.f32 and its final
// detections (locateFaces) into result.json; each crop's 7 expression probabilities into result.json.
import fs from 'node:fs';
import path from 'node:path';
import Module, { createRequire } from 'node:module';

const [tfjsDir, faceapiDir, jobFile] = process.argv.slice(2);
if (!tfjsDir || !faceapiDir || !jobFile) {
  console.error('usage: node faceapi_reference.mjs TFJS_DIR FACEAPI_DIR JOB.json');
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
const load = Module._load;
Module._load = function (request, parent, isMain) {
  if (request === '@tensorflow/tfjs') return tf;
  if (request === '@tensorflow/tfjs-backend-wasm') return {};
  return load.call(this, request, parent, isMain);
};
const faceapi = require(path.resolve(faceapiDir, 'dist', 'face-api.node-wasm.js'));

function readImage(item) {
  const raw = fs.readFileSync(item.file);
  return tf.tensor3d(new Int32Array(Uint8Array.from(raw)), item.shape, 'int32');
}

function writeF32(file, values) {
  fs.writeFileSync(file, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
}

const job = JSON.parse(fs.readFileSync(jobFile, 'utf8'));
await tf.setBackend('cpu');
await tf.ready();
const result = { tfjs: tf.version.tfjs, backend: tf.getBackend(), node: process.version, faceapi: faceapi.version,
  images: {}, crops: {} };
if (job.images.length) {
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(job.model_dir);
  for (const item of job.images) {
    const x = readImage(item);
    const netInput = await faceapi.toNetInput(x);
    const { boxes, scores } = faceapi.nets.ssdMobilenetv1.forwardInput(netInput);
    writeF32(path.join(job.out_dir, `${item.key}.ssd_boxes.f32`), await boxes[0].data());
    writeF32(path.join(job.out_dir, `${item.key}.ssd_scores.f32`), await scores[0].data());
    tf.dispose([...boxes, ...scores]);
    const t0 = Date.now();
    const found = await faceapi.nets.ssdMobilenetv1.locateFaces(x, { minConfidence: job.min_confidence });
    result.images[item.key] = {
      ms: Date.now() - t0,
      detections: found.map((d) => [d.box.x, d.box.y, d.box.x + d.box.width, d.box.y + d.box.height, d.score]),
    };
    x.dispose();
  }
}
if (job.crops.length) {
  await faceapi.nets.faceExpressionNet.loadFromDisk(job.model_dir);
  for (const item of job.crops) {
    const x = readImage(item);
    const expressions = await faceapi.nets.faceExpressionNet.predictExpressions(x);
    result.crops[item.key] = faceapi.FACE_EXPRESSION_LABELS.map((label) => expressions[label]);
    x.dispose();
  }
}
fs.writeFileSync(path.join(job.out_dir, 'result.json'), JSON.stringify(result));
console.log(`face-api ${result.faceapi} on tfjs ${result.tfjs} (${result.backend} backend, node ${result.node}): `
  + `${job.images.length} image(s), ${job.crops.length} crop(s)`);
