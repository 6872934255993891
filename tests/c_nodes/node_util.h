/* Small helpers shared by the test node libraries: allocation of outputs and metadata. */
#pragma once
#include <stdlib.h>
#include <string.h>

#include "custom_node_interface.h"

static inline const char* param_value(const struct CustomNodeParam* params, int count, const char* key) {
    for (int i = 0; i < count; i++)
        if (strcmp(params[i].key, key) == 0) return params[i].value;
    return NULL;
}

/* One info entry with malloc'ed dims (0 in dims = dynamic). */
static inline void set_info(struct CustomNodeTensorInfo* info, const char* name, CustomNodeTensorPrecision precision,
                            int dimsCount, const uint64_t* dims) {
    info->name = name;
    info->precision = precision;
    info->dimsCount = dimsCount;
    info->dims = (uint64_t*)malloc(dimsCount * sizeof(uint64_t));
    memcpy(info->dims, dims, dimsCount * sizeof(uint64_t));
}

/* One FP32 output tensor with malloc'ed dims and data; returns the data. */
static inline float* set_fp32_output(struct CustomNodeTensor* out, const char* name, int dimsCount, const uint64_t* dims) {
    uint64_t elements = 1;
    for (int i = 0; i < dimsCount; i++) elements *= dims[i];
    out->name = name;
    out->precision = FP32;
    out->dimsCount = dimsCount;
    out->dims = (uint64_t*)malloc(dimsCount * sizeof(uint64_t));
    memcpy(out->dims, dims, dimsCount * sizeof(uint64_t));
    out->dataBytes = elements * sizeof(float);
    out->data = (uint8_t*)malloc(out->dataBytes ? out->dataBytes : 1);
    return (float*)out->data;
}

static inline const struct CustomNodeTensor* find_input(const struct CustomNodeTensor* inputs, int count, const char* name) {
    for (int i = 0; i < count; i++)
        if (strcmp(inputs[i].name, name) == 0) return &inputs[i];
    return NULL;
}
