/*
 * rayvino custom node interface.
 *
 * Binary-compatible with OpenVINO Model Server's src/custom_node_interface.h: the same structs
 * in the same field order, the same precision values and the same six exported functions.
 * A library built against OVMS's header runs here unchanged, and the other way round.
 *
 * Contract, as in OVMS:
 *  - every exported function returns 0 on success;
 *  - inputs are shared read-only buffers: never write through inputs[i].data or dims;
 *  - each outputs array, each output's data and dims, each info array and each info's dims is
 *    handed back exactly once through release(); after a nonzero execute() nothing is released,
 *    so the library frees what it allocated itself;
 *  - in tensor info, a dim of 0 or (uint64_t)-1 is dynamic.
 */
#pragma once

#include <stdint.h>

typedef enum {
    UNSPECIFIED,
    FP32,
    FP16,
    U8,
    I8,
    I16,
    U16,
    I32,
    FP64,
    I64
} CustomNodeTensorPrecision;

struct CustomNodeTensor {
    const char* name;
    uint8_t* data;
    uint64_t dataBytes;
    uint64_t* dims;
    uint64_t dimsCount;
    CustomNodeTensorPrecision precision;
};

struct CustomNodeTensorInfo {
    const char* name;
    uint64_t* dims;
    uint64_t dimsCount;
    CustomNodeTensorPrecision precision;
};

struct CustomNodeParam {
    const char *key, *value;
};

#ifdef __cplusplus
extern "C" {
#endif

/* Called once per node replica before anything else; may set *customNodeLibraryInternalManager. */
int initialize(void** customNodeLibraryInternalManager, const struct CustomNodeParam* params, int paramsCount);
/* Called once when the replica shuts down; a nonzero result is only logged. */
int deinitialize(void* customNodeLibraryInternalManager);
int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* customNodeLibraryInternalManager);
int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* customNodeLibraryInternalManager);
int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* customNodeLibraryInternalManager);
int release(void* ptr, void* customNodeLibraryInternalManager);

#ifdef __cplusplus
}
#endif
