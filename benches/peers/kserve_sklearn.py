"""KServe's Python ModelServer serving a scikit-learn model.joblib (or model.pkl) over the v2 protocol, the way KServe's own
sklearnserver does (its package is not on PyPI, so this is the same ~20 lines: load with joblib, predict)."""

import argparse
import os
import uuid

import joblib
import kserve
from kserve import InferRequest, InferResponse, Model, ModelServer


class SKLearnModel(Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.ready = False

    def load(self) -> bool:
        name = "model.joblib" if os.path.exists(os.path.join(self.model_dir, "model.joblib")) else "model.pkl"
        self._model = joblib.load(os.path.join(self.model_dir, name))
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        result = self._model.predict(x)
        # Like KServe's own handlers: a response id is required, generated when the request has none.
        response = InferResponse(model_name=self.name, infer_outputs=[], response_id=payload.id or str(uuid.uuid4()))
        # Labels as INT64 (an IsolationForest's -1/1), regressions as FP64, as KServe's sklearnserver encodes them.
        integer = result.dtype.kind in "iu"
        out = kserve.InferOutput(name="predict", shape=list(result.shape), datatype="INT64" if integer else "FP64")
        out.set_data_from_numpy(result.astype("int64" if integer else "float64"), binary_data=False)
        response.outputs.append(out)
        return response


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = SKLearnModel(args.model_name, args.model_dir)
    model.load()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port).start([model])
