/* OVMS's mock test node: every call fails. */
#include "node_util.h"

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 1; }
int deinitialize(void* manager) { return 1; }
int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) { return 1; }
int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) { return 1; }
int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) { return 1; }
int release(void* ptr, void* manager) { return 1; }
