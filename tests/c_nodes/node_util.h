/* Helpers for the test node libraries, on top of the built-in nodes' own (nodes/src/common.h:
 * set_info, set_output, find_input, new_infos); compiled with -I nodes. */
#pragma once
#include "src/common.h"

static inline const char* param_value(const struct CustomNodeParam* params, int count, const char* key) {
    return get_string_param(params, count, key, NULL);
}

/* One FP32 output tensor with malloc'ed dims and data; returns the data. */
static inline float* set_fp32_output(struct CustomNodeTensor* out, const char* name, int dimsCount, const uint64_t* dims) {
    return (float*)set_output(out, name, FP32, sizeof(float), dimsCount, dims);
}
