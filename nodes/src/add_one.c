/* Built-in add_one (OVMS's example node): input_numbers FP32 [1,10] ->
 * output_numbers = input_numbers + add_number (default 1) - sub_number (default 0). */
#define NODE_NAME "add_one"
#include "common.h"

STATELESS_NODE

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    const struct CustomNodeTensor* in = find_input(inputs, inputsCount, "input_numbers");
    NODE_ASSERT(inputsCount == 1 && in != NULL, "expected exactly one input, input_numbers");
    NODE_ASSERT(in->precision == FP32, "input_numbers must be FP32");
    NODE_ASSERT(in->dimsCount == 2 && in->dims[0] == 1 && in->dims[1] == 10, "input_numbers must have shape [1,10]");
    float delta = get_float_param(params, paramsCount, "add_number", 1) - get_float_param(params, paramsCount, "sub_number", 0);
    *outputsCount = 1;
    *outputs = (struct CustomNodeTensor*)calloc(1, sizeof(struct CustomNodeTensor));
    float* out = (float*)set_output(*outputs, "output_numbers", FP32, sizeof(float), 2, in->dims);
    for (int i = 0; i < 10; i++) out[i] = ((const float*)in->data)[i] + delta;
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 10};
    *infoCount = 1;
    *info = new_infos(1);
    set_info(*info, "input_numbers", FP32, 2, dims);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 10};
    *infoCount = 1;
    *info = new_infos(1);
    set_info(*info, "output_numbers", FP32, 2, dims);
    return 0;
}
